-- The time of the last DROP DATABASE on a server, so purges can be spaced out (each forces a checkpoint).
ALTER TABLE servers ADD COLUMN last_purge_at BIGINT;
