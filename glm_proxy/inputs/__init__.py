"""The three front doors' requests -> the one chat request and the upstream's single message."""
