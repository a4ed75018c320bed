"""The sample user (sample_user.json) and the loader that puts it into a database for the demo and the tests."""
