"""Run configs shipped with losslens: `losslens train NAME` loads NAME.toml from here."""
