DROP TABLE delivery_events;
DROP TABLE campaign_recipients;
DROP TABLE campaigns;
