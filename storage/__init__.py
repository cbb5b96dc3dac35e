"""The encrypted local store: SQLCipher database, its key, migrations, repositories."""
