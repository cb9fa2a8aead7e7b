// Empty: this package only fetches the librdkafka source (see Cargo.toml).
