package criulog

import "regexp"

// Signature maps one kind of CRIU error line to its cause and fix.
//
// Cause and Fix may name the pattern's named groups as ${name}; they are
// filled from the matched line. A group called "mountpoint" loses CRIU's
// leading "." ("./etc/hosts" becomes "/etc/hosts") so that it can be pasted
// into an --external option.
type Signature struct {
	// ID is stable: reports and tests refer to it.
	ID string
	// Pattern is matched against the message of an error line, after the
	// timestamp, pid prefix and "Error (file:line):" have been removed.
	Pattern *regexp.Regexp
	Cause   string
	Fix     string
	// Findings are the IDs of the kata-cr findings that predict this error
	// before a dump, the most direct first: a dump that fails on this
	// signature was predicted when one of them failed.
	Findings []string
	// FollowOn marks generic lines that CRIU prints after the real error
	// ("Dumping FAILED."): they are consequences, not causes of their own.
	FollowOn bool
	// AnyLine lets the signature match lines that are not CRIU Error lines:
	// libnftables writes its own messages into CRIU's output.
	AnyLine bool
}

// Signatures is the table of known CRIU errors. The order matters: the
// first signature whose pattern matches wins, so specific patterns come
// before the generic follow-on ones.
var Signatures = []Signature{
	{
		ID:      "session-leader-outside-pidns",
		Pattern: regexp.MustCompile(`A session leader of (?:zombie process )?(?P<pid>\d+)\((?P<nspid>\d+)\) is outside of its pid namespace`),
		Cause: "Process ${pid} (pid ${nspid} inside the container) belongs to a session whose leader lives outside " +
			"the container's pid namespace. CRIU cannot dump such a session, not even with --shell-job. This happens " +
			"when the container init is started without setsid(): the Kata agent from 2.5.0 to 4.0.0 does so for " +
			"every process without a terminal.",
		Fix: "Make the container init a session leader: have the runtime call setsid() before it execs the init " +
			"(the Kata agent 4.1.0 and later, runc and crun always do; Kata 2.5.0 to 4.0.0 do it only for processes " +
			"with a terminal, so running the container with -t also works). A setsid wrapper as the entrypoint " +
			"helps only where the init does not lead its own process group; under Kata's agent it does, so setsid " +
			"forks and pid 1 exits. Wrapping a child, as in sh -c 'setsid sh -c \"sleep 3600\"', never helps: " +
			"pid 1 keeps the outside session.",
		Findings: []string{"process.session-leader"},
	},
	{
		ID:      "not-session-leader-on-restore",
		Pattern: regexp.MustCompile(`The root process (?P<pid>\d+) is not a session leader`),
		Cause:   "The images hold a tree whose root process (${pid}) is not a session leader, as a dump with --shell-job makes.",
		Fix:     "Restore with --shell-job as well, or dump a tree whose root is a session leader.",
	},
	{
		ID:       "pidns-without-init",
		Pattern:  regexp.MustCompile(`Can't dump a pid namespace without the process init`),
		Cause:    "The dumped tree lives in its own pid namespace, but its root is not that namespace's init (pid 1).",
		Fix:      "Dump the namespace's init, the container's pid 1, with its whole tree.",
		Findings: []string{"process.pidns"},
	},
	{
		ID:      "nested-pidns",
		Pattern: regexp.MustCompile(`Can't dump nested pid namespace for (?P<pid>\d+)`),
		Cause: "Process ${pid} lives in a pid namespace of its own, nested in the container's: it or an ancestor " +
			"was created with CLONE_NEWPID (unshare -p, a sandbox or a container runtime inside the container). " +
			"CRIU dumps the one pid namespace of the tree's root and cannot dump nested ones.",
		Fix: "Checkpoint a workload that creates no pid namespace inside its container; no CRIU option helps. " +
			"A restart does not help either, so kata-cr --auto-fix refuses to restart such a workload.",
		Findings: []string{"process.pidns"},
	},
	{
		ID:      "nested-userns",
		Pattern: regexp.MustCompile(`Can't dump nested user namespace for (?P<pid>\d+)`),
		Cause: "Process ${pid} lives in a user namespace of its own, nested in the one of the tree's root: it or an " +
			"ancestor was created with CLONE_NEWUSER (unshare -U, a rootless sandbox inside the container). CRIU dumps " +
			"the user namespace of the tree's root only and cannot dump nested ones.",
		Fix:      "Checkpoint a workload that creates no user namespace inside its container; no CRIU option helps.",
		Findings: []string{"process.userns"},
	},
	{
		ID:      "seize-timeout",
		Pattern: regexp.MustCompile(`Timeout reached\. Try to interrupt`),
		Cause: "CRIU's --timeout ran out before it could stop every task of the tree: a task in state D (a parent " +
			"waiting in vfork() for its child, a task stuck on I/O) cannot be stopped. The next error names the task.",
		Fix: "Checkpoint once no task of the tree waits in state D: let a vfork child exec or exit. kata-cr predicts " +
			"a pending vfork (process.vfork) and does not start that dump.",
		Findings: []string{"process.vfork"},
	},
	{
		ID:      "traced-task",
		Pattern: regexp.MustCompile(`Unseizable non-zombie (?P<pid>\d+) found, state (?P<state>[^DZ\s]), err`),
		Cause: "CRIU could not seize task ${pid} (state ${state}) with ptrace: a task that another process already " +
			"traces (a debugger, strace, or a process of the container that ptrace-attached it) cannot be traced a " +
			"second time, so CRIU can neither stop nor dump it.",
		Fix: "Detach the tracer from the task before the dump (end the debugger or strace session, or have the " +
			"tracing process PTRACE_DETACH); no CRIU option dumps a traced task. kata-cr predicts it (process.ptrace).",
		Findings: []string{"process.ptrace"},
	},
	{
		ID:      "unseizable-task",
		Pattern: regexp.MustCompile(`Unseizable non-zombie (?P<pid>\d+) found, state (?P<state>\S+), err`),
		Cause: "CRIU could not stop (seize) task ${pid} before its --timeout ran out: the task is in state ${state}. " +
			"A task in state D sleeps uninterruptibly: a parent waiting in vfork() for a child that has not exec'd " +
			"or exited stays so until the child does, and so does a task stuck on I/O (a hung NFS or FUSE server).",
		Fix: "Checkpoint once the task has left state D: let the vfork child exec or exit. CRIU waits its whole " +
			"--timeout before it says so; kata-cr predicts a pending vfork (process.vfork) and does not start that dump.",
		Findings: []string{"process.vfork"},
	},
	{
		ID:      "inet-sockopt-6.16",
		Pattern: regexp.MustCompile(`sockets: Can't get (?P<level>\d+):(?P<opt>\d+) opt: Operation not supported`),
		Cause: "CRIU reads every socket option of each socket it dumps, and socket option ${level}:${opt} of a TCP or " +
			"UDP socket is refused: Linux 6.16 moved SO_PASSCRED (1:16) and SO_PASSSEC (1:34) to unix and netlink " +
			"sockets, and CRIU before 4.2 takes the refusal for an error. Every TCP or UDP socket, listening ones " +
			"included, fails so.",
		Fix:      "Use CRIU 4.2 or later (kata-cr --criu-suite forky or sid ships 4.2.1), or a guest kernel before 6.16.",
		Findings: []string{"criu.inet-sockets", "criu.kernel-compat"},
	},
	{
		ID:      "autofs-missing",
		Pattern: regexp.MustCompile(`failed to mount autofs`),
		Cause: "criu check --experimental mounts an autofs to see that CRIU can dump autofs mounts, and the kernel " +
			"has no autofs: the autofs4 module is not loaded (Debian builds it as a module) or CONFIG_AUTOFS_FS is off.",
		Fix: "Load autofs4 (modprobe autofs4; kata-cr doctor --fix does it in the guest) or build the kernel with " +
			"CONFIG_AUTOFS_FS. Only a workload with autofs mounts needs it.",
		Findings: []string{"kernel.AUTOFS_FS", "criu.check-experimental"},
	},
	{
		ID:      "overlayfs-missing",
		Pattern: regexp.MustCompile(`Unable to fsopen overlayfs`),
		Cause: "criu check --extra tries to create an overlayfs mount (CRIU 4.2 checks how the kernel shows overlay " +
			"mounts) and the kernel has no overlay filesystem: the overlay module is not loaded (Debian builds it as a " +
			"module) or CONFIG_OVERLAY_FS is off.",
		Fix: "Load the overlay module (modprobe overlay) or build the kernel with CONFIG_OVERLAY_FS. Only a workload " +
			"with overlayfs mounts needs it; other dumps are not affected.",
		Findings: []string{"criu.check-extra"},
	},
	{
		ID:      "sock-diag-missing",
		Pattern: regexp.MustCompile(`Diag module missing`),
		Cause: "The kernel cannot report sockets of some family over sock_diag: the diag modules are not loaded " +
			"(Debian builds them as modules) or the kernel was built without them.",
		Fix: "Load the diag modules: modprobe unix_diag inet_diag tcp_diag udp_diag af_packet_diag netlink_diag " +
			"(kata-cr doctor --fix does it in the guest), or build the kernel with CONFIG_UNIX_DIAG, " +
			"CONFIG_INET_DIAG, CONFIG_INET_UDP_DIAG, CONFIG_PACKET_DIAG and CONFIG_NETLINK_DIAG.",
		Findings: []string{"kernel.UNIX_DIAG", "kernel.INET_DIAG", "kernel.INET_TCP_DIAG", "kernel.INET_UDP_DIAG",
			"kernel.PACKET_DIAG", "kernel.NETLINK_DIAG", "criu.check"},
	},
	{
		ID: "nftables-missing",
		Pattern: regexp.MustCompile(`create table inet CRIU|Can't create nftables table|kerndat_has_nftables_concat failed|` +
			`mnl\.c:\d+: Unable to initialize Netlink socket|Could not process rule: Operation not supported`),
		Cause: "CRIU could not create its nftables table while probing the kernel (CRIU 3.x checks nftables set " +
			"concatenation at start): nf_tables is not loaded or not built.",
		Fix: "Load nf_tables (it needs nfnetlink, libcrc32c and a crc32c provider: resolve them from modules.dep), " +
			"or build the kernel with CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET. CRIU 4.1 and later only warn here.",
		Findings: []string{"system.network-lock", "kernel.NF_TABLES", "criu.check"},
		AnyLine:  true,
	},
	{
		ID:      "loopback-down",
		Pattern: regexp.MustCompile(`Unable to connect a socket: Network is unreachable|kerndat_tcp_repair failed`),
		Cause: "CRIU's TCP repair probe connects to 127.0.0.1 and the network is unreachable: the loopback " +
			"interface is down in the network namespace CRIU runs in.",
		Fix:      "Bring the loopback interface up: ip link set lo up (kata-cr doctor --fix does it in the guest).",
		Findings: []string{"system.loopback"},
	},
	{
		ID:      "devpts-missing",
		Pattern: regexp.MustCompile(`Can't open /dev/ptmx`),
		Cause:   "There is no usable /dev/ptmx: devpts is not mounted.",
		Fix: "Mount devpts: mkdir -p /dev/pts && mount -t devpts -o ptmxmode=0666 devpts /dev/pts, and make " +
			"/dev/ptmx a link to pts/ptmx when it is missing (kata-cr doctor --fix does it in the guest).",
		Findings: []string{"system.devpts"},
	},
	{
		ID:      "vdso-bounds",
		Pattern: regexp.MustCompile(`Unexpected rt vDSO area bounds|Failed to fill self vdso symtable|kerndat_vdso_fill_symtable failed`),
		Cause: "This CRIU is too old for the running kernel: kernels from 6.13 on split the vvar mapping, and CRIU " +
			"before 4.1 does not understand the new vDSO layout (Kata pins a 6.18 guest kernel).",
		Fix: "Use CRIU 4.1 or later (Debian trixie has 4.1.1; kata-cr doctor --criu-suite trixie builds the guest " +
			"with it), or boot a kernel older than 6.13.",
		Findings: []string{"criu.kernel-compat", "criu.check"},
	},
	{
		ID:      "stdio-outside-container",
		Pattern: regexp.MustCompile(`Can't lookup mount=(?P<mnt>\d+) for fd=(?P<fd>[012]) path=(?P<path>/dev/(?:null|zero|u?random|tty|console))\b`),
		Cause: "The process's fd ${fd} still points at the guest's ${path}, a file on a mount outside the " +
			"container's mount namespace (mount ${mnt}), so CRIU cannot say where it is.",
		Fix: "Open the init's stdin, stdout and stderr inside the container, after pivot_root (its own /dev/null), " +
			"before exec; or keep them as pipes that the runtime hands back with --inherit-fd on restore.",
		Findings: []string{"process.fd-mounts"},
	},
	{
		ID:      "initramfs-root",
		Pattern: regexp.MustCompile(`Can't lookup mount=1 for fd=(?P<fd>-?\d+) path=(?P<path>\S+)`),
		Cause:   "${path} lies on the initramfs root (rootfs, mount 1), which is not a mount CRIU can see or dump.",
		Fix: "Switch the root first: switch_root (or pivot_root) into a tmpfs or a real root filesystem before " +
			"starting the workload.",
		Findings: []string{"process.fd-mounts"},
	},
	{
		ID:      "mount-lookup",
		Pattern: regexp.MustCompile(`Can't lookup mount=(?P<mnt>\d+) for fd=(?P<fd>-?\d+) path=(?P<path>\S+)`),
		Cause: "A dumped process holds ${path} (fd ${fd}) on mount ${mnt}, which is not part of the dumped mount " +
			"namespace: a file bind-mounted from outside the container, such as the sandbox's /etc/hosts, " +
			"/etc/hostname or /etc/resolv.conf.",
		Fix: "Declare every bind mount from outside as external: criu dump --external mnt[MOUNTPOINT]:KEY, and " +
			"criu restore --root ROOTFS --external mnt[KEY]:SOURCE (kata-cr checkpoint --auto-fix does this). " +
			"--skip-mnt is no fix: the restored container silently loses the bind.",
		Findings: []string{"process.fd-mounts"},
	},
	{
		ID:      "mount-no-root",
		Pattern: regexp.MustCompile(`(?P<mnt>\d+):(?P<mountpoint>\S+) doesn't have a proper root mount`),
		Cause: "Mount ${mnt} at ${mountpoint} binds a file or directory from outside the container's root, so CRIU " +
			"finds no mount in the dump to take it from.",
		Fix: "Declare it external: criu dump --external mnt[${mountpoint}]:KEY, and criu restore --root ROOTFS " +
			"--external mnt[KEY]:SOURCE (kata-cr checkpoint --auto-fix does this). --skip-mnt is no fix: the " +
			"restored container silently loses the bind.",
		Findings: []string{"mount.external-bind"},
	},
	{
		ID:      "unix-stream-external",
		Pattern: regexp.MustCompile(`Can't dump half of stream unix connection`),
		Cause:   "A stream unix socket is connected to a peer outside the dumped tree; --ext-unix-sk covers datagram sockets only.",
		Fix: "Dump with --external unix[INODE] for that socket (INODE is the dumped tree's own end) and restore with " +
			"--inherit-fd fd[N]:socket:[INODE], N a new socket connected to the peer, or keep both ends of the connection " +
			"inside the dumped tree (in a pod: checkpoint the whole pod).",
		Findings: []string{"process.unix-sockets", "process.unix-pod-peer"},
	},
	{
		ID:      "unix-external",
		Pattern: regexp.MustCompile(`External socket (?:is used|found in image)|Can't dump name-less external socket`),
		Cause:   "A unix socket is connected to a peer outside the dumped tree.",
		Fix: "For a datagram socket dump and restore with --ext-unix-sk; a stream connection needs --external " +
			"unix[INODE] on dump and --inherit-fd on restore.",
		Findings: []string{"process.unix-sockets", "process.unix-pod-peer"},
	},
	{
		ID:      "tcp-established",
		Pattern: regexp.MustCompile(`Connected TCP socket`),
		Cause:   "A dumped process has an established TCP connection, which CRIU refuses to dump by default.",
		Fix: "Dump and restore with --tcp-established (the connection is frozen and restored with TCP repair; the " +
			"peer must stay up), or close the connection before the dump.",
		Findings: []string{"process.tcp"},
	},
	{
		ID:      "tcp-in-flight",
		Pattern: regexp.MustCompile(`In-flight connection`),
		Cause:   "A listening socket has connections that are not yet accepted.",
		Fix:     "Dump with --skip-in-flight to drop them (the clients retry), or dump when no connection is pending.",
	},
	{
		ID:      "unsupported-fs",
		Pattern: regexp.MustCompile(`FS mnt (?P<mountpoint>\S+) dev \S+ root \S+ unsupported id`),
		Cause: "The mount at ${mountpoint} has a filesystem CRIU cannot dump (virtiofs, 9p, fuse and the like; Kata " +
			"shares the container rootfs with virtio-fs or 9p).",
		Fix: "Declare the mount external: criu dump --external mnt[${mountpoint}]:KEY, criu restore --external " +
			"mnt[KEY]:SOURCE; or keep the workload's data on a filesystem CRIU can dump (tmpfs, ext4, overlay).",
		Findings: []string{"mount.filesystems"},
	},
	{
		ID:       "fuse-not-external",
		Pattern:  regexp.MustCompile(`(?P<mountpoint>\S+) is a fuse mount but not external`),
		Cause:    "${mountpoint} is a FUSE mount, which CRIU cannot dump.",
		Fix:      "Declare it external: criu dump --external mnt[${mountpoint}]:KEY, criu restore --external mnt[KEY]:SOURCE.",
		Findings: []string{"mount.filesystems"},
	},
	{
		ID:      "membarrier",
		Pattern: regexp.MustCompile(`(?i)membarrier`),
		Cause: "CRIU could not query or restore membarrier() registrations: CRIU 3.19 and later use membarrier, " +
			"and the kernel was built without CONFIG_MEMBARRIER.",
		Fix:      "Build the guest kernel with CONFIG_MEMBARRIER=y (kata-cr kernel check --emit-fragment writes a fragment that adds it).",
		Findings: []string{"kernel.MEMBARRIER"},
	},
	{
		ID:       "file-locks",
		Pattern:  regexp.MustCompile(`Some file locks are hold by dumping tasks`),
		Cause:    "A dumped process holds a file lock (flock, POSIX or OFD), which CRIU refuses to dump by default.",
		Fix:      "Dump and restore with --file-locks.",
		Findings: []string{"process.file-locks"},
	},
	{
		ID:       "tun-missing",
		Pattern:  regexp.MustCompile(`Unable to create tun|Can't create tun device|kerndat_tun_netns failed`),
		Cause:    "CRIU could not create a tun device: the tun module is not loaded (or CONFIG_TUN is off).",
		Fix:      "Load tun: modprobe tun (kata-cr doctor --fix does it in the guest), or build the kernel with CONFIG_TUN.",
		Findings: []string{"kernel.TUN"},
	},
	{
		ID:       "veth-missing",
		Pattern:  regexp.MustCompile(`Unable to create a veth pair|Failed to add veth pair`),
		Cause:    "CRIU could not create a veth pair: the veth module is not loaded (or CONFIG_VETH is off).",
		Fix:      "Load veth: modprobe veth (kata-cr doctor --fix does it in the guest), or build the kernel with CONFIG_VETH.",
		Findings: []string{"kernel.VETH"},
	},
	{
		ID:      "tmpfs-tar",
		Pattern: regexp.MustCompile(`Can't (?:dump|restore) tmpfs content`),
		Cause: "CRIU saves and restores the content of tmpfs mounts inside the container (/dev, /dev/shm) by " +
			"running GNU tar, and tar failed: the guest has no tar, or busybox's, which lacks the options CRIU uses.",
		Fix:      "Put GNU tar on the guest's PATH.",
		Findings: []string{"system.tar"},
	},
	{
		ID:       "ghost-limit",
		Pattern:  regexp.MustCompile(`Can't dump ghost file (?P<path>\S+) of (?P<size>\d+) size, increase limit`),
		Cause:    "A process holds the deleted file ${path} (${size} bytes), larger than CRIU's ghost file limit.",
		Fix:      "Raise the limit with --ghost-limit SIZE, or close the deleted file before the dump.",
		Findings: []string{"process.ghost-files"},
	},
	{
		ID:      "network-lock-iptables",
		Pattern: regexp.MustCompile(`Iptables configuration failed|tcp: Failed to lock TCP connection (?P<conn>\S+)`),
		Cause: "CRIU locks the TCP connections it dumps with its network lock, iptables unless told otherwise, and " +
			"iptables is missing here (\"iptables: not found\" just before): a Kata-style guest has no iptables.",
		Fix: "Dump with --network-lock nftables when this CRIU supports it (criu check --feature network_lock_nftables; " +
			"kata-cr checkpoint --auto-fix plans it with --tcp-established), or put iptables in the guest.",
		Findings: []string{"process.tcp", "system.network-lock"},
	},
	{
		ID:      "inet-proto-unsupported",
		Pattern: regexp.MustCompile(`Unsupported proto (?P<proto>\d+) for socket (?P<ino>[0-9a-f]+)`),
		Cause: "A dumped process holds inet socket 0x${ino} of protocol ${proto}, which CRIU has no dumper for " +
			"(262 is MPTCP: Go programs from Go 1.24 on listen with MPTCP by default where the kernel has it).",
		Fix: "Have the workload use TCP or UDP: for a Go program set GODEBUG=multipathtcp=0 in its environment " +
			"(or sysctl net.mptcp.enabled=0 in the sandbox before it starts); no CRIU option dumps these sockets.",
		Findings: []string{"process.socket-protocols"},
	},
	{
		ID:      "send-fds-refused",
		Pattern: regexp.MustCompile(`send_fds failed \(-22\)`),
		Cause: "CRIU's parasite could not pass the task's descriptors to CRIU over its unix socket: the kernel refuses " +
			"with EINVAL to send some kinds of file with SCM_RIGHTS, among them io_uring instances (anon_inode:[io_uring]). " +
			"CRIU has no dumper for io_uring and fails here, before it can name the file.",
		Fix: "Run the workload without the io_uring instance (close it before the dump, or use a build of the program " +
			"without io_uring); no CRIU option dumps it. kata-cr predicts it (process.files).",
		Findings: []string{"process.files"},
	},
	{
		ID:      "file-type-unsupported",
		Pattern: regexp.MustCompile(`Can't dump file (?P<fd>\d+) of that type \[(?P<mode>[0-7]+)\] \((?P<what>[^)]*)\)`),
		Cause: "A dumped process holds fd ${fd} (${what}), a kind of file this CRIU has no dumper for: " +
			"a pidfd (CRIU 3.x; Go's os/exec keeps one for every child it starts), io_uring, a perf event, or a character device other than the memory devices, tun and terminals.",
		Fix: "Run the workload without that descriptor (reap children at once, or use a CRIU that dumps pidfds), " +
			"or give it its stdio on /dev/null, pipes or a pty instead of a console device; no CRIU option dumps it.",
		Findings: []string{"process.files"},
	},
	{
		ID:       "udp-corked",
		Pattern:  regexp.MustCompile(`Can't dump corked dgram socket (?P<ino>[0-9a-f]+)`),
		Cause:    "A dumped process holds the UDP socket with inode 0x${ino} with UDP_CORK set; CRIU refuses a corked UDP socket, whether data waits in it or not.",
		Fix:      "Have the workload clear UDP_CORK (setsockopt UDP_CORK 0, which sends what it holds) before the dump; no CRIU option dumps a corked socket.",
		Findings: []string{"process.udp-cork"},
	},
	{
		ID:      "link-remap",
		Pattern: regexp.MustCompile(`Can't create link remap for (?P<path>\S+?)\.? Use link-remap option`),
		Cause: "A dumped process holds ${path} open, whose name was removed while other hard links keep the file; " +
			"CRIU can save it only by linking it back under a new name, which it does only when allowed.",
		Fix:      "Dump with --link-remap (kata-cr checkpoint --auto-fix does): CRIU links the file as link_remap.N next to its old name, and the restore opens and removes that link.",
		Findings: []string{"process.link-remap", "process.inotify"},
	},
	{
		ID:      "inotify-no-path",
		Pattern: regexp.MustCompile(`Can't find suitable path for handle \(dev (?P<dev>0x[0-9a-f]+) ino (?P<ino>0x[0-9a-f]+)\)`),
		Cause: "An inotify watch is on inode ${ino} of device ${dev}, a file on tmpfs whose name was removed with no " +
			"other link: CRIU saves a watch by the watched file's path, and tmpfs inodes cannot be found again by handle after a restore.",
		Fix:      "Keep the watched file's name (or another hard link to it) until the dump, or remove the watch before dumping.",
		Findings: []string{"process.inotify"},
	},
	{
		ID: "unix-inflight-data",
		Pattern: regexp.MustCompile(`Non-empty write queue on an in-flight socket (?P<ino>0x[0-9a-f]+)|` +
			`Found a closed in-flight socket to (?P<listener>0x[0-9a-f]+)`),
		Cause: "A listening unix socket of the dumped tree has a connection waiting to be accepted whose client has " +
			"sent data (or has closed): CRIU saves such a connection by connecting the client again on restore, " +
			"without the data, and from 3.18 on refuses rather than lose it (CRIU 3.17 dumped it and lost the data).",
		Fix:      "Have the server accept its queued connections before the dump, or the clients connect after it.",
		Findings: []string{"process.unix-queued"},
	},
	{
		ID:      "fifo-missing",
		Pattern: regexp.MustCompile(`Can't open (?:fake )?fifo (?P<id>0x[0-9a-f]+) \[(?P<path>[^\]]+)\]`),
		Cause: "A restored process held the FIFO ${path}, and it is not in the restored files: a FIFO is a " +
			"file, and CRIU opens it again by its path (the data in it is in the images).",
		Fix: "Carry the container's special files (FIFOs, device nodes) with the checkpoint, as kata-cr's changed " +
			"files do, or create the FIFO at ${path} before the restore.",
	},
	{
		ID:      "restore-file-missing",
		Pattern: regexp.MustCompile(`Can't open file (?P<path>\S+?)(?: on restore)?: No such file or directory`),
		Cause: "A restored process held the file ${path} (a path inside the restored root), and it is not in " +
			"the restored files: CRIU saves open files by path and opens them again.",
		Fix: "Restore on the container's files as they were at the dump: carry the files the container changed " +
			"with the checkpoint (kata-cr's rootfs-diff.tar does), or create ${path} before the restore.",
	},
	{
		ID:      "external-masters",
		Pattern: regexp.MustCompile(`has unreachable sharing\. Try --enable-external-masters`),
		Cause:   "A mount is a slave of a mount outside the dumped mount namespace.",
		Fix:     "Dump with --enable-external-masters, or make the container's mounts private before starting the workload.",
	},
	{
		ID:      "restore-needs-root",
		Pattern: regexp.MustCompile(`The --root option is required to restore a mount namespace`),
		Cause:   "The images hold a mount namespace, and CRIU needs to know which directory becomes its root.",
		Fix:     "Restore with --root ROOTFS, the container's root filesystem.",
	},
	{
		ID:       "unprivileged",
		Pattern:  regexp.MustCompile(`can't dump unprivileged task|CAP_CHECKPOINT_RESTORE|Operation not permitted.*ptrace|ptrace.*Operation not permitted`),
		Cause:    "CRIU lacks the privileges to inspect or seize the processes.",
		Fix:      "Run CRIU as root, or with CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE (and --unprivileged).",
		Findings: []string{"system.privileges"},
	},
	{
		ID:      "no-space",
		Pattern: regexp.MustCompile(`No space left on device`),
		Cause:   "The filesystem that holds the images (or the log) is full.",
		Fix:     "Free space or put the images directory on a larger filesystem.",
	},
	{
		ID: "checkpoint-restore-missing",
		Pattern: regexp.MustCompile(`System call kcmp is not supported|prctl: PR_SET_MM_\w+ is not supported|` +
			`Can't open \d+/sys/kernel/ns_last_pid`),
		Cause: "The kernel lacks what CONFIG_CHECKPOINT_RESTORE provides (kcmp, prctl(PR_SET_MM), a writable " +
			"ns_last_pid); Kata's kernel fragments do not set it.",
		Fix: "Build the kernel with CONFIG_CHECKPOINT_RESTORE=y (kata-cr kernel check --emit-fragment writes a " +
			"fragment that adds it with the other options CRIU needs).",
		Findings: []string{"system.ns-last-pid", "kernel.CHECKPOINT_RESTORE"},
	},
	{
		ID:       "uffd-missing",
		Pattern:  regexp.MustCompile(`(?:Non-cooperative )?UFFD is not supported`),
		Cause:    "The kernel has no userfaultfd, which lazy restore (--lazy-pages) needs.",
		Fix:      "Build the kernel with CONFIG_USERFAULTFD=y, or do not use lazy pages (a plain dump and restore work without it).",
		Findings: []string{"kernel.USERFAULTFD"},
	},
	{
		ID:      "time-ns-missing",
		Pattern: regexp.MustCompile(`Time namespaces are not supported`),
		Cause:   "The kernel has no time namespaces, so CRIU cannot restore the monotonic and boot clocks of a dumped tree.",
		Fix:     "Build the kernel with CONFIG_TIME_NS=y; without it a restored process sees the clocks jump.",
	},
	{
		ID:       "iptables-lock",
		Pattern:  regexp.MustCompile(`Locking network failed: iptables-restore returned`),
		Cause:    "CRIU locks the network with iptables by default, and iptables-restore failed: iptables is missing or the kernel lacks CONFIG_NETFILTER_XT_MARK.",
		Fix:      "Install iptables and build CONFIG_NETFILTER_XT_MARK, or use --network-lock nftables (with nf_tables loaded).",
		Findings: []string{"system.network-lock", "kernel.NETFILTER_XT_MARK"},
	},
	{
		ID:      "cpu-mismatch",
		Pattern: regexp.MustCompile(`FPU feature required by image is not supported on host|cpu: .*not supported on host`),
		Cause:   "The images were dumped on a CPU with features this CPU lacks (for guests: another qemu -cpu model or accelerator).",
		Fix:     "Restore on the same CPU model (the same qemu -cpu and accelerator), or dump and restore with --cpu-cap=none when the workload does not depend on those features.",
	},

	// Follow-on lines: CRIU prints them after the error that caused them.
	{
		ID:       "failed",
		Pattern:  regexp.MustCompile(`(?:Pre-dumping|Dumping|Restoring) FAILED`),
		Cause:    "CRIU gave up; the cause is an earlier error line.",
		FollowOn: true,
	},
	{
		ID: "step-failed",
		Pattern: regexp.MustCompile(`\(pid: \d+\) failed with -?\d+|^Pre-dumping files failed \(pid|` +
			`^Can't dump threads$|^Can't dump thread for pid \d+$|Lazy pages transfer FAILED|^Unable to open fd=\d+ id=0x[0-9a-f]+$`),
		Cause:    "A dump step gave up for one process; the cause is an earlier error line.",
		FollowOn: true,
	},
	{
		ID:       "fd-transfer-failed",
		Pattern:  regexp.MustCompile(`^Can't retrieve FDs from socket|^Message reply from daemon is trimmed`),
		Cause:    "CRIU did not get a task's descriptors from its parasite; the cause is the parasite's error line before it.",
		FollowOn: true,
	},
	{
		ID:       "kerndat-failed",
		Pattern:  regexp.MustCompile(`\w+ failed when initializing kerndat|Could not initialize kernel features detection`),
		Cause:    "One of CRIU's kernel feature probes failed; the cause is an earlier error line.",
		FollowOn: true,
	},
	{
		ID:       "child-exited",
		Pattern:  regexp.MustCompile(`exited, status=\d+|Can't wait or bad status`),
		Cause:    "A helper process that CRIU started failed; the cause is an earlier error line.",
		FollowOn: true,
	},
	{
		ID:       "pidns-id",
		Pattern:  regexp.MustCompile(`Can't make (?:pid|user)ns id`),
		Cause:    "CRIU could not record a process's pid or user namespace; the cause is the error line before it.",
		FollowOn: true,
	},
	{
		ID:       "netlink-error",
		Pattern:  regexp.MustCompile(`-?\d+ reported by netlink`),
		Cause:    "A netlink request failed; the next error line says which.",
		FollowOn: true,
	},
}

// SignatureByID returns the signature with the given ID.
func SignatureByID(id string) (Signature, bool) {
	for _, s := range Signatures {
		if s.ID == id {
			return s, true
		}
	}
	return Signature{}, false
}
