"""`python -m onceflow_operator ...`: the `onceflow` command, as the local executor and the tests start it."""

from onceflow_operator.cli import main

if __name__ == "__main__":
    main()
