"""The runners: flags, files, logging and devices around the `zoo` library."""
