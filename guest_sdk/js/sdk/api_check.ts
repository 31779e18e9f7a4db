/**
 * Compile-time only (tsc, never bundled): the implementation provides what the
 * declaration file promises tenants.
 */
import type * as Declared from "../dynamic-workflows";
import * as Implemented from "./index";

export const implementationMatchesDeclaration: {
  WorkflowEntrypoint: typeof Declared.WorkflowEntrypoint;
  NonRetryableError: typeof Declared.NonRetryableError;
} = Implemented;
