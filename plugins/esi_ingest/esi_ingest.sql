-- esi-ingest's addition to esi-parser's meta table (esi.sql, which its
-- schema lists first): per file an ingestion mirrored, its name, object key,
-- size and SHA-256 as the host's transfer measured them.
ALTER TABLE esi_ingestion_meta ADD COLUMN files jsonb;
