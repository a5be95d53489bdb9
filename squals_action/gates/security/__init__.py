"""Security gates: dependency vulnerabilities from pluggable sources, and the change-risk score."""
