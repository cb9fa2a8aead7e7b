// The graph's constraints and indexes: the guide's (part VI), and one uniqueness constraint
// per event label on its event id, which is what makes a redelivered event merge into the
// node already there. Applied by the graph-writer at every start; each is IF NOT EXISTS.
CREATE CONSTRAINT exchange_name IF NOT EXISTS FOR (e:Exchange) REQUIRE e.name IS UNIQUE;
CREATE CONSTRAINT asset_symbol IF NOT EXISTS FOR (a:Asset) REQUIRE a.symbol IS UNIQUE;
CREATE CONSTRAINT pair_symbol IF NOT EXISTS FOR (p:Pair) REQUIRE p.symbol IS UNIQUE;
CREATE CONSTRAINT wallet_address IF NOT EXISTS FOR (w:Wallet) REQUIRE w.address IS UNIQUE;
CREATE CONSTRAINT whale_transfer_id IF NOT EXISTS FOR (t:WhaleTransfer) REQUIRE t.id IS UNIQUE;
CREATE CONSTRAINT price_movement_id IF NOT EXISTS FOR (m:PriceMovement) REQUIRE m.id IS UNIQUE;
CREATE CONSTRAINT cascade_event_id IF NOT EXISTS FOR (c:CascadeEvent) REQUIRE c.id IS UNIQUE;
CREATE CONSTRAINT feed_event_id IF NOT EXISTS FOR (f:FeedEvent) REQUIRE f.id IS UNIQUE;
CREATE INDEX cascade_timestamp IF NOT EXISTS FOR (c:CascadeEvent) ON (c.timestamp);
CREATE INDEX transfer_timestamp IF NOT EXISTS FOR (t:WhaleTransfer) ON (t.timestamp);
CREATE INDEX movement_timestamp IF NOT EXISTS FOR (m:PriceMovement) ON (m.timestamp);
