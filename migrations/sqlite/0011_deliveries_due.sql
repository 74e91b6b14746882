-- The fan-out looks once per poll for subscriptions with a delivery due, whatever the number of
-- subscriptions: pending deliveries by due time.
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE state = 0;
