from bench.commands.train import main

main()
