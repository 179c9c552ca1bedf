from neurosearch.cli.app import main

main()
