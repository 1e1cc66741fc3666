"""The servers the services need, one module each: RabbitMQ, a CouchDB-compatible server
(PouchDB Server) and S3 (moto). Each starts its server, waits for it and provisions it."""
