import CMPI

/// Point-to-point messages in flight on one communicator: posted now, completed later, moved
/// along by `test()` in between. Open MPI's TCP transport moves data only inside MPI calls, so
/// whoever overlaps a transfer with computation calls `test()` now and then (between autograd
/// nodes); shared memory and large messages both need it, the rendezvous of a large message
/// included. The buffers belong to the caller and must stay put until `wait()` returns.
package struct Transfers {
    package let group: Communicator
    private var requests: [MPI_Request?] = []

    package init(on group: Communicator) { self.group = group }

    package var isEmpty: Bool { requests.isEmpty }

    package mutating func send<T: MPIScalar>(_ data: UnsafePointer<T>, count: Int, to peer: Int, tag: Int) throws {
        guard let comm = group.comm, count > 0 else { return }
        var req = deeptrain_mpi_request_null()
        try Communicator.check("MPI_Isend", MPI_Isend(data, Int32(count), T.mpiType, Int32(peer), Int32(tag), comm, &req))
        track()
        requests.append(req)
    }

    /// The progress thread runs while this holds posted requests.
    private mutating func track() {
        if requests.isEmpty { ProgressThread.shared?.begin() }
    }

    package mutating func receive<T: MPIScalar>(_ data: UnsafeMutablePointer<T>, count: Int, from peer: Int, tag: Int) throws {
        guard let comm = group.comm, count > 0 else { return }
        var req = deeptrain_mpi_request_null()
        try Communicator.check("MPI_Irecv", MPI_Irecv(data, Int32(count), T.mpiType, Int32(peer), Int32(tag), comm, &req))
        track()
        requests.append(req)
    }

    /// Lets the library move data; true when everything posted has completed.
    @discardableResult
    package mutating func test() throws -> Bool {
        guard !requests.isEmpty else { return true }
        var done: Int32 = 0
        try requests.withUnsafeMutableBufferPointer { r in
            try Communicator.check("MPI_Testall", MPI_Testall(Int32(r.count), r.baseAddress, &done, deeptrain_mpi_statuses_ignore()))
        }
        if done != 0 { requests.removeAll(); ProgressThread.shared?.end() }
        return done != 0
    }

    /// Until the first `n` requests posted have completed (the rest stay in flight).
    package mutating func wait(prefix n: Int) throws {
        let n = Swift.min(n, requests.count)
        guard n > 0 else { return }
        try requests.withUnsafeMutableBufferPointer { r in
            try Communicator.check("MPI_Waitall", MPI_Waitall(Int32(n), r.baseAddress, deeptrain_mpi_statuses_ignore()))
        }
    }

    /// Until everything posted has completed.
    package mutating func wait() throws {
        guard !requests.isEmpty else { return }
        try requests.withUnsafeMutableBufferPointer { r in
            try Communicator.check("MPI_Waitall", MPI_Waitall(Int32(r.count), r.baseAddress, deeptrain_mpi_statuses_ignore()))
        }
        requests.removeAll()
        ProgressThread.shared?.end()
    }
}
