-- Which worker process holds a running instance: `dwf worker --processes N` runs N
-- processes on one file, and when one dies its supervisor queues again exactly the
-- instances that process was running (the others' runs go on).
ALTER TABLE instances ADD COLUMN owner TEXT;
