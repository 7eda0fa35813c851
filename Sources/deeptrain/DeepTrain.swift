import ArgumentParser

@main
struct DeepTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deeptrain",
        abstract: "Train DeepSeek-V2-style Mixture-of-Experts language models on MPI.",
        subcommands: [DemoCommand.self, BenchCommand.self, EnvCommand.self])
}
