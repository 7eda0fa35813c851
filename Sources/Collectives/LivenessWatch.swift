import Foundation
import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Heartbeats between the ranks of a job, so that a lost peer ends the job instead of leaving
/// every other rank waiting in a collective forever (docs/design.md §11, "Liveness"). Open MPI's TCP
/// transport does not notice a peer that is gone without closing its sockets — a cut link, a
/// frozen or powered-off node, a stopped process — so a blocked `MPI_Allreduce` waits for the
/// kernel's retransmission timeout (about 15 minutes) or for ever.
///
/// Each rank opens a UDP socket of its own and a thread that, every `interval`, sends a small
/// datagram to the peers it watches and reads theirs. The watch is about liveness, not
/// progress: the thread beats while the rank computes, writes a checkpoint, waits for a reward
/// command or sits in an MPI call, and stops only when the process stops (killed, frozen,
/// SIGSTOPped) or cannot reach the peer. A peer unheard for `timeout` seconds is lost: the rank
/// names it (rank and host) and ends the job with exit code 3.
///
/// Each rank watches its ring neighbours, `reach` on each side (every rank in jobs of up to
/// 2·reach + 1): a watched pair watches both ways, and any split of the job into two parts
/// cuts at least two ring edges, so ranks on both sides notice — the side that holds mpirun
/// reports it. A peer is armed by its first datagram: where UDP cannot pass between two hosts
/// (a firewall), the pair is reported once and not watched, rather than ending every job.
package final class LivenessWatch: @unchecked Sendable {
    /// Seconds without a heartbeat after which a peer is lost, when the recipe does not say.
    package static let defaultTimeout: Double = 30
    /// Ring neighbours watched on each side.
    static let reach = 8
    /// The datagram's first field, "DTHB".
    static let magic: UInt32 = 0x4454_4842

    /// What a rank tells the others about itself at start-up (one allgather).
    struct Card {
        var port: UInt16
        var nonce: UInt64
        var host: String
        /// Its IPv4 interfaces (network byte order) other than loopback, with their netmasks.
        var addresses: [(address: UInt32, mask: UInt32)]

        static let fields = 32, maxAddresses = 8, hostFields = 13

        var encoded: [Int64] {
            var out = [Int64](repeating: 0, count: Self.fields)
            out[0] = Int64(port)
            out[1] = Int64(bitPattern: nonce)
            out[2] = Int64(addresses.count)
            for (i, a) in addresses.prefix(Self.maxAddresses).enumerated() {
                out[3 + i] = Int64(a.address)
                out[3 + Self.maxAddresses + i] = Int64(a.mask)
            }
            let bytes = Array(host.utf8.prefix(Self.hostFields * 8))
            for (i, b) in bytes.enumerated() { out[19 + i / 8] |= Int64(b) << Int64(8 * (i % 8)) }
            return out
        }

        init(port: UInt16, nonce: UInt64, host: String, addresses: [(address: UInt32, mask: UInt32)]) {
            self.port = port
            self.nonce = nonce
            self.host = host
            self.addresses = Array(addresses.prefix(Self.maxAddresses))
        }

        init(decoding f: ArraySlice<Int64>) {
            let v = Array(f)
            let n = Swift.min(Swift.max(Int(v[2]), 0), Self.maxAddresses)
            var bytes = [UInt8]()
            for i in 0..<(Self.hostFields * 8) {
                let b = UInt8(truncatingIfNeeded: v[19 + i / 8] >> Int64(8 * (i % 8)))
                if b == 0 { break }
                bytes.append(b)
            }
            self.init(port: UInt16(truncatingIfNeeded: v[0]), nonce: UInt64(bitPattern: v[1]),
                      host: String(decoding: bytes, as: UTF8.self),
                      addresses: (0..<n).map { (UInt32(truncatingIfNeeded: v[3 + $0]), UInt32(truncatingIfNeeded: v[3 + Self.maxAddresses + $0])) })
        }
    }

    /// A watched peer: where its datagrams go, and when one last came.
    struct Peer {
        let rank: Int
        let host: String
        let destinations: [sockaddr_in]
        var lastHeard: Double
        var armed = false
    }

    package let timeout: Double
    let interval: Double
    let rank: Int, size: Int, host: String, nonce: UInt64
    private let socket: Int32
    private var peers: [Peer]
    private let stopFlag = Atomic()
    private let lost: (String) -> Void

    /// Starts the watch on every rank of `world` (collective: one allgather). `lost` is called
    /// on the watch's thread with the message when a peer is lost; it must end the process.
    package static func start(world: Communicator, timeout: Double,
                              lost: @escaping (String) -> Void = LivenessWatch.endJob) throws -> LivenessWatch? {
        guard world.size > 1, timeout > 0 else { return nil }
        let socket = try openSocket()
        let mine = Card(port: try boundPort(socket), nonce: UInt64.random(in: 1...UInt64.max), host: hostName(), addresses: interfaces())
        let all = try world.allgather(mine.encoded)
        let cards = (0..<world.size).map { Card(decoding: all[($0 * Card.fields)..<(($0 + 1) * Card.fields)]) }
        let watch = LivenessWatch(rank: world.rank, cards: cards, socket: socket, timeout: timeout, lost: lost)
        let thread = Thread { watch.run() }
        thread.name = "liveness"
        thread.stackSize = 1 << 20
        thread.start()
        return watch
    }

    init(rank: Int, cards: [Card], socket: Int32, timeout: Double, lost: @escaping (String) -> Void) {
        self.rank = rank
        self.size = cards.count
        self.host = cards[rank].host
        self.nonce = cards[0].nonce
        self.socket = socket
        self.timeout = timeout
        self.interval = Swift.min(1, timeout / 5)
        self.lost = lost
        let now = Self.clock()
        self.peers = Self.watched(rank: rank, size: cards.count).map { p in
            Peer(rank: p, host: cards[p].host, destinations: Self.destinations(from: cards[rank], to: cards[p]), lastHeard: now)
        }
    }

    /// Stops beating and watching (after MPI_Finalize: the job is over).
    package func stop() { stopFlag.set() }

    /// The ranks `rank` watches: its ring neighbours up to `reach` away on either side.
    static func watched(rank: Int, size: Int) -> [Int] {
        var out = Set<Int>()
        for d in 1...Swift.max(1, Swift.min(reach, size / 2)) {
            out.insert((rank + d) % size)
            out.insert((rank - d + size) % size)
        }
        out.remove(rank)
        return out.sorted()
    }

    /// Where a datagram for `peer` goes: its loopback when it shares this host; else its
    /// addresses on a subnet this host is on (the interfaces MPI's TCP would take), or all of
    /// them when none is. A datagram that lands elsewhere is dropped by its receiver (nonce and
    /// ranks do not match).
    static func destinations(from me: Card, to peer: Card) -> [sockaddr_in] {
        let loopback = UInt32(0x7F00_0001).bigEndian
        let shared = peer.addresses.filter { p in me.addresses.contains { m in p.address & m.mask == m.address & m.mask } }
        let targets = peer.host == me.host ? [loopback] : (shared.isEmpty ? peer.addresses : shared).map(\.address)
        return targets.map { a in
            var s = sockaddr_in()
            s.sin_family = sa_family_t(AF_INET)
            s.sin_port = peer.port.bigEndian
            s.sin_addr.s_addr = a
            return s
        }
    }

    // MARK: the thread

    func run() {
        let started = Self.clock()
        var nextBeat = 0.0, lastLoop = started
        var unreachableReported = false
        while !stopFlag.isSet {
            let now = Self.clock()
            // This process was stopped (SIGSTOP, a frozen node) or starved: its peers were
            // not silent, it was. Give them a fresh period rather than blaming them.
            if now - lastLoop > Swift.max(timeout / 2, 4 * interval) {
                for i in peers.indices { peers[i].lastHeard = now }
            }
            lastLoop = now
            if now >= nextBeat {
                beat()
                nextBeat = now + interval
            }
            var fds = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            _ = poll(&fds, 1, Int32(Swift.max(1, (nextBeat - now) * 1000)))
            receive(at: Self.clock())
            let checked = Self.clock()
            let silent = peers.filter { $0.armed && checked - $0.lastHeard > timeout }
            if !silent.isEmpty, !stopFlag.isSet {
                lost(lostMessage(silent, now: checked))
                return
            }
            let neverHeard = peers.filter { !$0.armed }
            if !neverHeard.isEmpty, !unreachableReported, checked - started > timeout {
                unreachableReported = true
                warn("rank \(rank) (host \(host)): no heartbeat ever came from " + names(neverHeard)
                     + ": UDP does not pass between these hosts (a firewall?), so their loss cannot be noticed (docs/multinode.md)")
            }
        }
    }

    private func beat() {
        var packet = Self.packet(nonce: nonce, from: rank, to: 0)
        for p in peers {
            packet.to = UInt32(p.rank)
            for var d in p.destinations {
                _ = withUnsafePointer(to: &packet) { b in
                    withUnsafePointer(to: &d) { a in
                        a.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(socket, b, MemoryLayout<Packet>.size, Int32(MSG_DONTWAIT), $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                }
            }
        }
    }

    private func receive(at now: Double) {
        var packet = Packet(magic: 0, from: 0, to: 0, nonce: 0)
        while true {
            let n = recv(socket, &packet, MemoryLayout<Packet>.size, Int32(MSG_DONTWAIT))
            guard n > 0 else { return }
            guard n == MemoryLayout<Packet>.size, packet.magic == Self.magic, packet.nonce == nonce, packet.to == UInt32(rank),
                  let i = peers.firstIndex(where: { $0.rank == Int(packet.from) }) else { continue }
            peers[i].lastHeard = now
            peers[i].armed = true
        }
    }

    private func lostMessage(_ silent: [Peer], now: Double) -> String {
        let quiet = Int((now - (silent.map(\.lastHeard).min() ?? now)).rounded())
        return "rank \(rank) of \(size) (host \(host)): lost " + names(silent) + ": no heartbeat for \(quiet) s "
            + "(parallel.timeout \(Self.seconds(timeout)) s); its process, its node or the link to it is down. Ending the job"
    }

    private func names(_ ps: [Peer]) -> String {
        (ps.count == 1 ? "rank " : "ranks ") + ps.map { "\($0.rank) (host \($0.host))" }.joined(separator: ", ")
    }

    private func warn(_ message: String) {
        FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }

    package static func seconds(_ t: Double) -> String { t == t.rounded() ? String(Int(t)) : String(t) }

    /// The default end: say why, give Open MPI a second to forward the line to mpirun, then end
    /// this node's part of the job. Under Open MPI's daemon (`orted`, every node but mpirun's
    /// own) the rank stops the daemon, which kills the node's ranks and exits: MPI_Abort would
    /// only queue a message for mpirun, which a cut link never delivers, leaving the daemon and
    /// the node's other ranks behind. Elsewhere (ranks started by mpirun itself, or by SLURM)
    /// MPI_Abort ends the job. Whatever happens, the process leaves with code 3 within 10 s.
    package static func endJob(_ message: String) {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
        sleep(1)
        let fallback = Thread { sleep(10); _exit(3) }
        fallback.start()
        let parent = getppid()
        if processName(parent) == "orted" {
            FileHandle.standardError.write(Data("note: the rank stops its node's Open MPI daemon to end the job there; mpirun may then report that daemon as lost\n".utf8))
            kill(parent, SIGTERM)
            sleep(10)
            _exit(3)
        }
        MPI_Abort(deeptrain_mpi_comm_world(), 3)
        _exit(3)
    }

    /// A process's command name (/proc/PID/comm), or nil.
    static func processName(_ pid: pid_t) -> String? {
        (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: the datagram and the socket

    struct Packet {
        var magic: UInt32
        var from: UInt32
        var to: UInt32
        var nonce: UInt64
    }

    static func packet(nonce: UInt64, from: Int, to: Int) -> Packet {
        Packet(magic: magic, from: UInt32(from), to: UInt32(to), nonce: nonce)
    }

    static func clock() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    static func openSocket() throws -> Int32 {
        let s = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw LivenessError("socket(AF_INET, SOCK_DGRAM)", errno) }
        var any = sockaddr_in()
        any.sin_family = sa_family_t(AF_INET)
        any.sin_addr.s_addr = INADDR_ANY
        let bound = withUnsafePointer(to: &any) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { let e = errno; close(s); throw LivenessError("bind", e) }
        return s
    }

    static func boundPort(_ s: Int32) throws -> UInt16 {
        var a = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let r = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        guard r == 0 else { throw LivenessError("getsockname", errno) }
        return UInt16(bigEndian: a.sin_port)
    }

    static func hostName() -> String {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count - 1)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// This host's IPv4 interfaces that are up, loopback excepted.
    static func interfaces() -> [(address: UInt32, mask: UInt32)] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [(address: UInt32, mask: UInt32)] = []
        var p = list
        while let i = p {
            defer { p = i.pointee.ifa_next }
            let flags = Int32(i.pointee.ifa_flags)
            guard let a = i.pointee.ifa_addr, a.pointee.sa_family == sa_family_t(AF_INET), flags & Int32(IFF_UP) != 0,
                  flags & Int32(IFF_LOOPBACK) == 0, let m = i.pointee.ifa_netmask else { continue }
            let address = a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            let mask = m.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            out.append((address, mask))
        }
        return out
    }
}

/// The watch could not open its socket.
package struct LivenessError: Error, CustomStringConvertible {
    package let description: String
    init(_ call: String, _ code: Int32) { description = "liveness watch: \(call) failed: \(String(cString: strerror(code)))" }
}

/// A flag set once by one thread and read by another.
final class Atomic: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}
