"""What the tests share: one module per package under test (helpers, and the fixtures registered in
``tests/conftest.py``), and in ``scripts/`` the programs tests start by path."""
