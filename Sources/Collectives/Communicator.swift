import Foundation
import CMPI

/// An MPI call that returned an error code (communicators run with MPI_ERRORS_RETURN).
package struct MPIError: Error, CustomStringConvertible {
    package let call: String
    package let code: Int32
    package var description: String {
        var buf = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING))
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        let text = String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "\(call) failed: \(text) (MPI error \(code))"
    }
}

/// Where each rank's block starts when blocks of `counts` lie back to back (MPI's displs).
package func displacements(_ counts: [Int]) -> [Int] {
    var out = [Int](), at = 0
    for c in counts { out.append(at); at += c }
    return out
}

/// Element types the collectives move.
package protocol MPIScalar {
    static var mpiType: MPI_Datatype { get }
}
extension Float: MPIScalar { package static var mpiType: MPI_Datatype { deeptrain_mpi_float() } }
extension Double: MPIScalar { package static var mpiType: MPI_Datatype { deeptrain_mpi_double() } }
extension Int64: MPIScalar { package static var mpiType: MPI_Datatype { deeptrain_mpi_int64() } }
extension Int: MPIScalar { package static var mpiType: MPI_Datatype { deeptrain_mpi_int64() } }

/// A group of processes that talk to each other: the world, or a data-, expert- or
/// pipeline-parallel group split from it. A one-process communicator needs no MPI at all (a
/// run without mpirun never initialises it), and every collective on it is a copy — the same
/// arithmetic as a larger group, so results do not depend on whether MPI is there.
///
/// Every call checks its return code and throws `MPIError`. The reductions here (`allreduce`)
/// are MPI's own, whose order of summation is the library's choice: use them where exact bits
/// do not matter (statistics, flags) or where one rank contributes each element. Gradients go
/// through `CanonicalSum` (`reduceScatterCanonical`), which sums in a fixed order
/// (docs/design.md §6.3).
package final class Communicator: @unchecked Sendable {
    // `package`: the benchmarks time raw MPI calls on the same communicator.
    package let comm: MPI_Comm?
    package let rank: Int
    package let size: Int

    init(comm: MPI_Comm?, rank: Int, size: Int) {
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    /// The MPI library's version line ("Open MPI v4.1.4, package: ..."); needs no MPI_Init.
    package static var libraryVersion: String {
        var buf = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING))
        var len: Int32 = 0
        MPI_Get_library_version(&buf, &len)
        // The length Open MPI returns counts the terminating NUL: read up to it.
        let text = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?"
    }

    /// A communicator of one process, without MPI.
    package static let solo = Communicator(comm: nil, rank: 0, size: 1)

    nonisolated(unsafe) private static var initialised = false

    /// Whether this process called MPI_Init: from then on it cannot leave the job alone.
    package static var isInitialised: Bool { initialised }

    /// True when this process was started by mpirun (Open MPI sets these before main).
    package static var launchedByMPI: Bool {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil || ProcessInfo.processInfo.environment["PMIX_RANK"] != nil
    }

    /// Threads for this rank when nothing says otherwise: its share of the node's cores (mpirun
    /// tells each rank how many ranks share the node), at least one.
    package static var defaultThreads: Int {
        let local = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "1") ?? 1
        return Swift.max(1, ProcessInfo.processInfo.activeProcessorCount / Swift.max(local, 1))
    }

    nonisolated(unsafe) private static var liveness: LivenessWatch?
    nonisolated(unsafe) private static var multipleThreads = false

    /// True when mpirun placed this job's ranks on more than one node (it tells each rank how
    /// many share its node before main): the only case where TCP carries the gradients.
    package static var spansNodes: Bool {
        let env = ProcessInfo.processInfo.environment
        guard let local = env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init),
              let all = env["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) else { return false }
        return local < all
    }

    /// Seconds between the progress thread's MPI calls (`ProgressThread`), or nil for none:
    /// 1 ms where the job spans nodes. DEEPTRAIN_PROGRESS_US sets the interval in microseconds
    /// (0: no thread), on one node too.
    static var progressInterval: Double? {
        if let text = ProcessInfo.processInfo.environment["DEEPTRAIN_PROGRESS_US"] {
            guard let us = Double(text), us >= 0, us <= 1e6 else {
                FileHandle.standardError.write(Data("warning: DEEPTRAIN_PROGRESS_US=\(text) is not microseconds in 0...1000000; ignored\n".utf8))
                return spansNodes ? 0.001 : nil
            }
            return us > 0 ? us * 1e-6 : nil
        }
        return spansNodes ? 0.001 : nil
    }

    /// Open MPI's TCP settings for a job across nodes, unless the user set them (docs/design.md
    /// §11): messages up to a gradient bucket's piece go eagerly. A larger message waits for
    /// the receiver's acknowledgement, which queues behind the receiver's own outgoing data on
    /// the same connection: the two directions then take turns and the link runs half duplex.
    static func tuneTCP() {
        guard spansNodes else { return }
        let bytes = String(4 << 20 + 64 << 10)  // a 4 MiB bucket and the headers
        for name in ["btl_tcp_eager_limit", "btl_tcp_rndv_eager_limit", "btl_tcp_max_send_size"] {
            setenv("OMPI_MCA_" + name, bytes, 0)
        }
    }

    /// The world: MPI_COMM_WORLD when launched by mpirun (initialising MPI once), otherwise
    /// a single process. The first call also starts the ranks' liveness watch
    /// (`LivenessWatch`): a rank unheard for `timeout` seconds ends the job; nil turns it off.
    package static func world(timeout: Double? = LivenessWatch.defaultTimeout) throws -> Communicator {
        guard launchedByMPI else { return solo }
        let first = !initialised
        let progress = first ? progressInterval : nil
        if first {
            tuneTCP()
            if progress != nil {
                var provided: Int32 = 0
                try check("MPI_Init_thread", MPI_Init_thread(nil, nil, Int32(deeptrain_mpi_thread_multiple()), &provided))
                multipleThreads = provided == Int32(deeptrain_mpi_thread_multiple())
            } else {
                try check("MPI_Init", MPI_Init(nil, nil))
            }
            initialised = true
            atexit {
                guard Communicator.initialised else { return }
                MPI_Finalize()
                Communicator.liveness?.stop()
            }
        }
        let w = deeptrain_mpi_comm_world()
        try check("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(w, deeptrain_mpi_errors_return()))
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(w, &r)
        MPI_Comm_size(w, &s)
        let world = Communicator(comm: w, rank: Int(r), size: Int(s))
        if first, let progress {
            if multipleThreads {
                try ProgressThread.start(world: w!, interval: progress)
            } else {
                FileHandle.standardError.write(Data("warning: this MPI has no MPI_THREAD_MULTIPLE: no progress thread, gradients move only in MPI calls\n".utf8))
            }
        }
        if first, let timeout { liveness = try LivenessWatch.start(world: world, timeout: timeout) }
        return world
    }

    /// Ends the whole job from any rank: mpirun kills every other rank. Used after a rank has
    /// printed why it fails, so that no rank waits forever in a collective.
    package static func abortJob(code: Int32) -> Never {
        if initialised { MPI_Abort(deeptrain_mpi_comm_world(), code) }
        exit(code)
    }

    static func check(_ call: String, _ code: Int32) throws {
        if code != MPI_SUCCESS { throw MPIError(call: call, code: code) }
    }

    /// The processes with the same `color`, ordered by `key` (MPI_Comm_split).
    package func split(color: Int, key: Int) throws -> Communicator {
        guard let comm else { return .solo }
        var out = deeptrain_mpi_comm_null()
        try Self.check("MPI_Comm_split", MPI_Comm_split(comm, Int32(color), Int32(key), &out))
        try Self.check("MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(out, deeptrain_mpi_errors_return()))
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(out, &r)
        MPI_Comm_size(out, &s)
        if s == 1 { return .solo }
        return Communicator(comm: out, rank: Int(r), size: Int(s))
    }

    /// How many nodes (shared-memory domains, `MPI_Comm_split_type`) the group's ranks are on.
    /// Collective.
    /// Each rank's node and place on it, in rank order: (node, local rank), nodes numbered by
    /// their lowest rank (`MPI_Comm_split_type`: the ranks that share memory).
    package func nodes() throws -> [(node: Int, local: Int)] {
        guard let comm else { return [(0, 0)] }
        var local = deeptrain_mpi_comm_null()
        try Self.check("MPI_Comm_split_type", MPI_Comm_split_type(comm, deeptrain_mpi_comm_type_shared(), Int32(rank),
                                                                  deeptrain_mpi_info_null(), &local))
        var localRank: Int32 = 0
        MPI_Comm_rank(local, &localRank)
        var lowest = [Int64(rank)]
        try lowest.withUnsafeMutableBufferPointer { b in
            try Self.check("MPI_Allreduce", MPI_Allreduce(deeptrain_mpi_in_place(), b.baseAddress, 1, Int64.mpiType, deeptrain_mpi_min(), local))
        }
        MPI_Comm_free(&local)
        let all = try allgather([Int64(lowest[0]), Int64(localRank)])
        let leaders = Array(Set(stride(from: 0, to: all.count, by: 2).map { all[$0] })).sorted()
        return (0..<size).map { r in (leaders.firstIndex(of: all[2 * r])!, Int(all[2 * r + 1])) }
    }

    /// A communicator over the same ranks, numbered `position` (collective: each rank passes
    /// its own; the positions are a permutation of 0..<size).
    package func renumbered(position: Int) throws -> Communicator {
        guard comm != nil else { return self }
        return try split(color: 0, key: position)
    }

    package func nodeCount() throws -> Int {
        guard let comm else { return 1 }
        var local = deeptrain_mpi_comm_null()
        try Self.check("MPI_Comm_split_type", MPI_Comm_split_type(comm, deeptrain_mpi_comm_type_shared(), Int32(rank),
                                                                  deeptrain_mpi_info_null(), &local))
        var localRank: Int32 = 0
        MPI_Comm_rank(local, &localRank)
        MPI_Comm_free(&local)
        var leaders = [localRank == 0 ? 1 : 0]
        try allreduceSum(&leaders)
        return leaders[0]
    }

    package func barrier() throws {
        guard let comm else { return }
        try Self.check("MPI_Barrier", MPI_Barrier(comm))
    }

    // MARK: reductions (MPI's order: statistics and single-contributor sums)

    /// Element-wise sum over the group, in place.
    package func allreduceSum<T: MPIScalar>(_ x: inout [T]) throws {
        guard let comm, !x.isEmpty else { return }
        let n = Int32(x.count)
        try x.withUnsafeMutableBytes { b in
            try Self.check("MPI_Allreduce", MPI_Allreduce(deeptrain_mpi_in_place(), b.baseAddress, n, T.mpiType, deeptrain_mpi_sum(), comm))
        }
    }

    package func allreduceMax(_ x: inout [Double]) throws {
        guard let comm, !x.isEmpty else { return }
        let n = Int32(x.count)
        try x.withUnsafeMutableBytes { b in
            try Self.check("MPI_Allreduce", MPI_Allreduce(deeptrain_mpi_in_place(), b.baseAddress, n, Double.mpiType, deeptrain_mpi_max(), comm))
        }
    }

    // MARK: data movement

    /// Rank `root`'s `x` everywhere (same count on every rank).
    package func broadcast<T: MPIScalar>(_ x: inout [T], root: Int) throws {
        guard let comm, !x.isEmpty else { return }
        let n = Int32(x.count)
        try x.withUnsafeMutableBytes { b in
            try Self.check("MPI_Bcast", MPI_Bcast(b.baseAddress, n, T.mpiType, Int32(root), comm))
        }
    }

    /// Every rank's `x` (all the same count), concatenated in rank order.
    package func allgather<T: MPIScalar>(_ x: [T]) throws -> [T] {
        guard let comm else { return x }
        var out = [T](unsafeUninitializedCapacity: x.count * size) { _, n in n = x.count * size }
        try x.withUnsafeBytes { s in
            try out.withUnsafeMutableBytes { r in
                try Self.check("MPI_Allgather", MPI_Allgather(s.baseAddress, Int32(x.count), T.mpiType, r.baseAddress,
                                                              Int32(x.count), T.mpiType, comm))
            }
        }
        return out
    }

    /// Variable-count allgather: rank r contributes `counts[r]` elements at `displs[r]` of `buffer`,
    /// which it already holds in place; afterwards every rank holds all of them.
    package func allgatherv(_ buffer: UnsafeMutablePointer<Float>, counts: [Int], displs: [Int]) throws {
        guard let comm else { return }
        let c = counts.map { Int32($0) }, d = displs.map { Int32($0) }
        try Self.check("MPI_Allgatherv", MPI_Allgatherv(deeptrain_mpi_in_place(), 0, Float.mpiType, buffer, c, d, Float.mpiType, comm))
    }

    /// Rank r's block for rank q (`sendCounts[q]` elements at `sendDispls[q]`) lands in q's
    /// `recv` at `recvDispls[r]`. One process: a copy.
    /// `agreed`: every rank passes the same counts (shards known to all, the benchmark), so
    /// equal blocks can take MPI_Alltoall, which Open MPI implements with better algorithms than
    /// the v-variant. Without it a rank cannot know the others' counts: one rank taking
    /// MPI_Alltoall while another takes MPI_Alltoallv would hang them both (an expert exchange
    /// in which a rank sends and receives nothing while the others do).
    package func alltoallv<T: MPIScalar>(_ send: UnsafePointer<T>, sendCounts: [Int], sendDispls: [Int],
                                        _ recv: UnsafeMutablePointer<T>, recvCounts: [Int], recvDispls: [Int], agreed: Bool = false) throws {
        guard let comm else {
            if sendCounts[0] > 0 { (recv + recvDispls[0]).update(from: send + sendDispls[0], count: sendCounts[0]) }
            return
        }
        if agreed, let c = sendCounts.first, sendCounts.allSatisfy({ $0 == c }), recvCounts.allSatisfy({ $0 == c }),
           sendDispls.enumerated().allSatisfy({ $0.element == $0.offset * c }), recvDispls.enumerated().allSatisfy({ $0.element == $0.offset * c }) {
            try Self.check("MPI_Alltoall", MPI_Alltoall(send, Int32(c), T.mpiType, recv, Int32(c), T.mpiType, comm))
            return
        }
        try Self.check("MPI_Alltoallv", MPI_Alltoallv(send, sendCounts.map { Int32($0) }, sendDispls.map { Int32($0) }, T.mpiType,
                                                      recv, recvCounts.map { Int32($0) }, recvDispls.map { Int32($0) }, T.mpiType, comm))
    }

    /// Fixed-size blocks: `send` holds `size` blocks of `count`, block q for rank q.
    package func alltoall<T: MPIScalar>(_ send: [T], count: Int) throws -> [T] {
        guard let comm else { return send }
        var out = [T](unsafeUninitializedCapacity: count * size) { _, n in n = count * size }
        try send.withUnsafeBytes { s in
            try out.withUnsafeMutableBytes { r in
                try Self.check("MPI_Alltoall", MPI_Alltoall(s.baseAddress, Int32(count), T.mpiType, r.baseAddress, Int32(count), T.mpiType, comm))
            }
        }
        return out
    }

    // MARK: point to point (pipeline stages)

    /// A send in flight; `wait()` before reusing or freeing its buffer.
    package final class Request: @unchecked Sendable {
        var request: MPI_Request?
        let buffer: [Float]
        init(_ r: MPI_Request?, buffer: [Float]) { request = r; self.buffer = buffer }
        package func wait() throws {
            try Communicator.check("MPI_Wait", MPI_Wait(&request, deeptrain_mpi_status_ignore()))
        }
    }

    /// Non-blocking send of `data` to `dest` with `tag` (the request keeps the buffer alive).
    package func isend(_ data: [Float], to dest: Int, tag: Int) throws -> Request {
        guard let comm else { fatalError("send on a one-process communicator") }
        var req: MPI_Request? = deeptrain_mpi_request_null()
        let r = Request(req, buffer: data)
        try r.buffer.withUnsafeBufferPointer { b in
            try Self.check("MPI_Isend", MPI_Isend(b.baseAddress, Int32(b.count), Float.mpiType, Int32(dest), Int32(tag), comm, &req))
        }
        r.request = req
        return r
    }

    /// A run of floats in this process's memory.
    package typealias Run = (start: UnsafeMutablePointer<Float>, count: Int)

    /// Allgather in place over scattered runs: `runs[q]` lists, where they lie in this rank's
    /// memory, the runs rank q holds up to date (every rank lists the same runs in the same
    /// order). Rank q sends each of its runs to every other rank, which receives it in place:
    /// no staging buffer, and on one node Open MPI moves each large message with a single copy
    /// (CMA) where packing, `MPI_Allgatherv` and unpacking made three.
    package func allgather(runs: [[Run]]) throws {
        precondition(runs.count == size)
        guard let comm, size > 1 else { return }
        var requests: [MPI_Request?] = []
        // Messages between two ranks match in the order they are posted: both sides post the
        // owner's runs in the order of `runs[owner]`. Receives first, so sends find them.
        for q in 0..<size where q != rank {
            for r in runs[q] {
                var req = deeptrain_mpi_request_null()
                try Self.check("MPI_Irecv", MPI_Irecv(r.start, Int32(r.count), Float.mpiType, Int32(q), Int32(Self.allgatherTag), comm, &req))
                requests.append(req)
            }
        }
        for r in runs[rank] {
            for q in 0..<size where q != rank {
                var req = deeptrain_mpi_request_null()
                try Self.check("MPI_Isend", MPI_Isend(r.start, Int32(r.count), Float.mpiType, Int32(q), Int32(Self.allgatherTag), comm, &req))
                requests.append(req)
            }
        }
        try requests.withUnsafeMutableBufferPointer { r in
            try Self.check("MPI_Waitall", MPI_Waitall(Int32(r.count), r.baseAddress, deeptrain_mpi_statuses_ignore()))
        }
        // A rank's sends complete when the receiver acknowledges them; with many messages some
        // acknowledgements queue behind a full shared-memory FIFO and go out only when the
        // receiver next enters MPI. A receiver that returned to its forward pass would keep the
        // sender waiting up to a whole step (docs/benchmarks.md); the barrier keeps both in MPI
        // until every acknowledgement is through.
        try barrier()
    }

    /// `allgather(runs:)`'s tag: apart from the pipeline's (2·micro-batch + 0/1), and below
    /// 32767, the largest tag every MPI must accept.
    package static let allgatherTag = 32_000

    /// Blocking receive of exactly `count` floats from `source` with `tag`.
    package func recv(count: Int, from source: Int, tag: Int) throws -> [Float] {
        guard let comm else { fatalError("recv on a one-process communicator") }
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBufferPointer { b in
            try Self.check("MPI_Recv", MPI_Recv(b.baseAddress, Int32(count), Float.mpiType, Int32(source), Int32(tag), comm,
                                                deeptrain_mpi_status_ignore()))
        }
        return out
    }
}
