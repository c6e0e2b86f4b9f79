from dnmf.cli import main

main()
