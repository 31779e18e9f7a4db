/**
 * Compile-time only (tsc, never bundled): the implementation takes and gives what the
 * declaration file promises tenants. (The classes' protected members make them nominal,
 * so their signatures are compared, not the classes.)
 */
import type * as Declared from "../dynamic-workflows";
import type * as Implemented from "./index";

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

export const implementationMatchesDeclaration: [
  Same<ConstructorParameters<typeof Declared.NonRetryableError>,
       ConstructorParameters<typeof Implemented.NonRetryableError>>,
  Same<ConstructorParameters<typeof Declared.WorkflowEntrypoint>,
       ConstructorParameters<typeof Implemented.WorkflowEntrypoint>>,
  Same<Parameters<Declared.WorkflowEntrypoint["run"]>,
       Parameters<Implemented.WorkflowEntrypoint["run"]>>,
] = [true, true, true];
