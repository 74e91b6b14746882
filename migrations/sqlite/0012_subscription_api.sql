-- Altinn Events' includeSubunits, kept and returned as given, and the API a subscription was created
-- through ('events' or 'broker'), whose paths name it in Location and the validation event's source.
ALTER TABLE subscriptions ADD COLUMN include_subunits INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subscriptions ADD COLUMN api TEXT NOT NULL DEFAULT 'broker';
