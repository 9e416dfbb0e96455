-- E-mail endpoints: the projected target address (no secrets).
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS email text;
