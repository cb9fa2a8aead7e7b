// The guide's initial entities (part VI): exchanges, assets, pairs and how they relate.
// MERGE throughout, so applying this again changes nothing; created_at is set once.
// Exchanges, assets and pairs that events name later are merged by the writes themselves.
MERGE (e:Exchange {name: 'binance'}) ON CREATE SET e.id = 'EX_BINANCE', e.created_at = datetime();
MERGE (e:Exchange {name: 'kraken'}) ON CREATE SET e.id = 'EX_KRAKEN', e.created_at = datetime();
MERGE (e:Exchange {name: 'bybit'}) ON CREATE SET e.id = 'EX_BYBIT', e.created_at = datetime();
MERGE (a:Asset {symbol: 'BTC'}) ON CREATE SET a.id = 'ASSET_BTC', a.name = 'Bitcoin';
MERGE (a:Asset {symbol: 'ETH'}) ON CREATE SET a.id = 'ASSET_ETH', a.name = 'Ethereum';
MERGE (a:Asset {symbol: 'USDT'}) ON CREATE SET a.id = 'ASSET_USDT', a.name = 'Tether';
MERGE (p:Pair {symbol: 'BTC/USDT'}) ON CREATE SET p.id = 'PAIR_BTCUSDT';
MERGE (p:Pair {symbol: 'ETH/USDT'}) ON CREATE SET p.id = 'PAIR_ETHUSDT';
MATCH (p:Pair {symbol: 'BTC/USDT'}), (b:Asset {symbol: 'BTC'}), (q:Asset {symbol: 'USDT'})
MERGE (p)-[:BASE_ASSET]->(b) MERGE (p)-[:QUOTE_ASSET]->(q);
MATCH (p:Pair {symbol: 'ETH/USDT'}), (b:Asset {symbol: 'ETH'}), (q:Asset {symbol: 'USDT'})
MERGE (p)-[:BASE_ASSET]->(b) MERGE (p)-[:QUOTE_ASSET]->(q);
MATCH (e:Exchange {name: 'binance'}), (p:Pair {symbol: 'BTC/USDT'}) MERGE (e)-[:LISTS]->(p);
