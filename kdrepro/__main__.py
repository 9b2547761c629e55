from kdrepro.cli import main

main()
