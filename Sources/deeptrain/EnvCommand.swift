import ArgumentParser
import CHDF5
import CMPI
import Training

/// Prints the versions of the C libraries DeepTrain links, to check an installation.
struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "env", abstract: "Versions of the linked MPI, BLAS and HDF5.")

    func run() throws {
        var buf = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING))
        var len: Int32 = 0
        MPI_Get_library_version(&buf, &len)
        let mpi = String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "?"
        var maj: UInt32 = 0, min: UInt32 = 0, rel: UInt32 = 0
        H5get_libversion(&maj, &min, &rel)
        print("mpi:  \(mpi)")
        print("blas: \(GemmBenchmark.blasDescription)")
        print("hdf5: \(maj).\(min).\(rel)")
    }
}
