"""What the data says: the SQL views over `contact_imports` and the `report` command."""
