import ArgumentParser
import Foundation
import Collectives
import FileSafety

/// How a command ends when something fails (docs/design.md §2.2). Commands throw; `report`,
/// called once from `DeepTrain.main`, turns any error into one line on stderr and the
/// documented exit code.
enum CommandFailure: Error {
    /// Bad input the module errors do not describe themselves (a flag combination, a line of
    /// stdin): exit code 1.
    case input(String)
    /// A failure on one rank of a running job: name the rank and end every rank (exit code 3,
    /// or the failure's own code).
    case rank(Communicator, String, code: Int32)

    /// Reports `error` and exits: input errors with 1, rank failures with their code, usage
    /// errors as swift-argument-parser does (64).
    static func report(_ error: Error) -> Never {
        switch error {
        case let e as InputError: exitOnBadInput(e.userMessage)
        case CommandFailure.input(let message): exitOnBadInput(message)
        case let CommandFailure.rank(world, message, code): exitOnRankFailure(world, message, code: code)
        default: DeepTrain.exit(withError: error)
        }
    }
}

/// Bad input ends the command with one line on stderr and exit code 1.
func exitOnBadInput(_ message: String) -> Never {
    // Under mpirun every rank finds the same bad input: one of them says so.
    let rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"].flatMap(Int.init) ?? 0
    // Every message quotes values in part; this bounds what any message can grow to.
    let bounded = message.utf8.count > 4096 ? String(message.prefix(4096)) + "… (message cut)" : message
    guard Communicator.isInitialised else {
        if rank == 0 { FileHandle.standardError.write(Data("error: \(bounded)\n".utf8)) }
        Foundation.exit(1)
    }
    // After MPI_Init a rank cannot leave alone: exiting runs MPI_Finalize, which waits for the
    // ranks that wait for it in a collective (a file one node lacks). Rank 0 says why and ends
    // the job; another rank first gives rank 0 time to do so (the same bad input everywhere),
    // then says why itself, naming its rank.
    if rank != 0 { sleep(5) }
    FileHandle.standardError.write(Data("error: \(rank == 0 ? "" : "rank \(rank): ")\(bounded)\n".utf8))
    Communicator.abortJob(code: 1)
}

/// A runtime failure on one rank: say which and why, then end the whole job (MPI_Abort, the
/// only one in the program), so no other rank waits forever in a collective.
func exitOnRankFailure(_ world: Communicator, _ message: String, code: Int32) -> Never {
    let who = world.size > 1 ? "rank \(world.rank) of \(world.size): " : ""
    FileHandle.standardError.write(Data("error: \(who)\(message)\n".utf8))
    if world.size > 1 { Communicator.abortJob(code: code) }
    Foundation.exit(code)
}

/// Bad input found by a command itself: thrown, so it is reported where every error is.
func fail(_ message: String) -> CommandFailure { .input(message) }
