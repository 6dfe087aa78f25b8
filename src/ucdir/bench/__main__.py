"""`python -m ucdir.bench [overrides]` (`make bench`)."""

from ucdir.bench.run import main

if __name__ == "__main__":
    main()
