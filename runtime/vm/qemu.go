// Package vm boots kata-cr's guests: it probes KVM, runs qemu with the
// guest image, carries the guest agent's events back to the host, bounds
// every wait and leaves no qemu behind.
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/runtime/agentapi"

	"github.com/kata-cr/kata-cr/reports"
)

// Accel is the accelerator a guest runs under and why it was chosen.
type Accel struct {
	// Name is "kvm" or "tcg".
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// The accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// BootSpec says how to run one guest.
type BootSpec struct {
	// QEMU is the qemu-system-x86_64 binary; empty means look it up in PATH.
	QEMU   string
	Kernel string
	Initrd string
	// Cmdline is appended to the kernel command line that Boot always
	// sets (console, panic, quiet).
	Cmdline []string
	// MemoryMB defaults to 1024, CPUs to 1.
	MemoryMB int
	CPUs     int
	// Accel defaults to TCG.
	Accel Accel
	// CPU is qemu's -cpu model: by default host under KVM (as Kata runs
	// it) and max under TCG.
	CPU string
	// BootTimeout bounds the time until the agent says hello; it defaults
	// to 90s under TCG and 30s under KVM.
	BootTimeout time.Duration
	// Interactive puts the guest's serial console on Stdin and Stdout (a
	// terminal); the console is still logged. Otherwise the console only
	// goes to the log.
	Interactive bool
	Stdin       io.Reader
	Stdout      io.Writer
	// ConsoleLog keeps the serial console in this file; by default it is
	// written to a temporary file removed by Close.
	ConsoleLog string
	// TempDir is where the temporary directory for sockets and the console
	// goes; it defaults to os.TempDir(). Unix socket paths are short, so it
	// must be too.
	TempDir string
	// Logf, when set, receives the qemu command line and milestones.
	Logf func(format string, args ...any)
	// Shares are host directories the guest mounts over virtio-9p.
	Shares []Share
	// TemplateDir, when set, keeps VM templates (template.go): a guest
	// starts from the template of its configuration when there is one,
	// and is saved as it at its hello when there is none. Interactive
	// guests never use one.
	TemplateDir string
}

// Share is a host directory shared with the guest over virtio-9p, the way
// Kata shares a container's rootfs with its guest (shared_fs =
// "virtio-9p"). The guest mounts it by Tag.
type Share struct {
	Tag      string
	Path     string
	ReadOnly bool
}

// Sentinel errors for the ways a guest can fail; a *GuestError wraps one.
var (
	ErrQEMU        = errors.New("qemu failed")
	ErrBootTimeout = errors.New("guest boot timed out")
	ErrKernelPanic = errors.New("guest kernel panicked")
	ErrGuestExited = errors.New("guest stopped before its agent started")
	ErrAgentExited = errors.New("guest agent stopped before finishing its job")
	ErrJobTimeout  = errors.New("guest job timed out")
	// ErrQEMUStopped is an ErrAgentExited where qemu ended while the agent
	// ran and the console shows no crash or panic: qemu was stopped from
	// outside (Ctrl-a x on an interactive console, a kill).
	ErrQEMUStopped = fmt.Errorf("qemu stopped while the guest agent ran: %w", ErrAgentExited)
)

// GuestError is a failed boot or job, with the end of the guest's serial
// console as evidence.
type GuestError struct {
	// Err is one of the sentinel errors above.
	Err error
	// Msg is the one-line description.
	Msg string
	// Console is the last lines of the serial console.
	Console []string
	// Stderr is what qemu wrote to its standard error.
	Stderr string
}

func (e *GuestError) Error() string { return e.Msg }
func (e *GuestError) Unwrap() error { return e.Err }

// consoleTailLines is how much of the console a GuestError carries.
const consoleTailLines = 20

// VM is a running qemu guest and the host end of its agent's channels.
type VM struct {
	spec    BootSpec
	args    []string
	cmd     *exec.Cmd
	dir     string
	console string
	stderr  syncBuffer

	ctlLn, dataLn *net.UnixListener
	ctl           net.Conn
	enc           *agentapi.Encoder
	events        chan agentapi.Event
	dataConn      chan net.Conn

	exited chan struct{}
	// closed ends the reader goroutines once Close has run, so that none
	// stays blocked handing over what nobody will read.
	closed chan struct{}

	// tpl is the guest's VM template (nil without BootSpec.TemplateDir),
	// tplUse what became of it, qmpPath qemu's QMP socket.
	tpl     *vmTemplate
	tplUse  TemplateUse
	qmpPath string

	started time.Time
	helloAt time.Time
	hello   bool
	// helloEv is the hello WaitHello read, for Run.
	helloEv  *agentapi.Event
	done     bool
	closeErr error
	once     sync.Once
}

// Boot starts qemu and waits until it has connected the agent's control
// channel. The guest is then booting, or starting from its VM template;
// Next returns its events. The caller must Close the VM on every path.
func Boot(ctx context.Context, spec BootSpec) (*VM, error) {
	vm, err := boot(ctx, spec)
	if !errors.Is(err, errTemplateLoad) {
		return vm, err
	}
	// A template this qemu cannot load (another qemu build, a damaged
	// file) is removed: the guest boots, and is saved as it again.
	note := err.Error()
	if vm != nil && vm.tpl != nil {
		os.Remove(vm.tpl.path)
	}
	vm, err = boot(ctx, spec)
	if vm != nil {
		vm.logf("%s: removed it and booted the guest", note)
		vm.tplUse.Note = note + ": removed it and booted the guest"
	}
	return vm, err
}

func boot(ctx context.Context, spec BootSpec) (*VM, error) {
	if err := kernel.CheckImage(spec.Kernel); err != nil {
		return nil, err
	}
	if _, err := os.Stat(spec.Initrd); err != nil {
		return nil, fmt.Errorf("guest image %s: %w", spec.Initrd, errors.Unwrap(err))
	}
	qemu, err := lookQEMU(spec.QEMU)
	if err != nil {
		return nil, err
	}
	spec = withDefaults(spec)
	dir, err := os.MkdirTemp(spec.TempDir, "kata-cr-vm-")
	if err != nil {
		return nil, fmt.Errorf("boot guest: %w", err)
	}
	vm := &VM{spec: spec, dir: dir, events: make(chan agentapi.Event, 64), dataConn: make(chan net.Conn, 1),
		exited: make(chan struct{}), closed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			vm.Close()
		}
	}()
	vm.console = spec.ConsoleLog
	if vm.console == "" {
		vm.console = filepath.Join(dir, "console.log")
	}
	ctlPath, dataPath := filepath.Join(dir, "ctl.sock"), filepath.Join(dir, "data.sock")
	if vm.ctlLn, err = listenUnix(ctlPath); err != nil {
		return nil, err
	}
	if vm.dataLn, err = listenUnix(dataPath); err != nil {
		return nil, err
	}
	vm.args = qemuArgs(spec, vm.console, ctlPath, dataPath)
	if spec.TemplateDir != "" && !spec.Interactive {
		if vm.tpl, err = openTemplate(qemu, spec); err != nil {
			vm.tplUse.Note = "no VM template: " + err.Error()
			vm.logf("%s", vm.tplUse.Note)
		}
	}
	if vm.tpl != nil {
		vm.tplUse.Path = vm.tpl.path
		vm.qmpPath = filepath.Join(dir, "qmp.sock")
		vm.args = append(vm.args, qmpArgs(vm.qmpPath)...)
		if vm.tpl.file != nil {
			// The template is the child's fd 3.
			vm.args = append(vm.args, "-incoming", "fd:3")
		}
	}
	vm.cmd = exec.Command(qemu, vm.args...)
	if vm.tpl != nil && vm.tpl.file != nil {
		vm.cmd.ExtraFiles = []*os.File{vm.tpl.file}
		defer vm.tpl.file.Close()
	}
	vm.logf("qemu command line: %s", vm.CommandLine())
	vm.cmd.Stderr = &vm.stderr
	if spec.Interactive {
		// qemu must stay in the terminal's foreground process group to
		// read from it, so it is killed by pid rather than by group.
		vm.cmd.Stdin, vm.cmd.Stdout = spec.Stdin, spec.Stdout
		vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	} else {
		vm.cmd.Stdout = &vm.stderr
		vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	// An interrupt during the steps before (image build, KVM probe) must
	// not start a guest.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("boot guest: %w", err)
	}
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	go func() {
		// The exit status is read from cmd.ProcessState.
		_ = vm.cmd.Wait()
		close(vm.exited)
	}()
	go vm.acceptData()

	// Unbuffered: a connection that Boot no longer waits for is closed
	// by the goroutine rather than left in the channel.
	ctlCh := make(chan net.Conn)
	go func() {
		c, err := vm.ctlLn.Accept()
		if err != nil {
			return
		}
		select {
		case ctlCh <- c:
		case <-vm.closed:
			_ = c.Close()
		}
	}()
	// qemu connects its socket chardevs while it starts, before the guest
	// runs: a long wait here means qemu itself is stuck.
	select {
	case c := <-ctlCh:
		vm.ctl = c
	case <-vm.exited:
		return nil, vm.exitError()
	case <-time.After(30 * time.Second):
		return nil, vm.fail(ErrQEMU, "qemu did not connect the agent channel within 30s")
	case <-ctx.Done():
		return nil, fmt.Errorf("boot guest: %w", ctx.Err())
	}
	vm.enc = agentapi.NewEncoder(vm.ctl)
	go vm.readEvents()
	if vm.tpl != nil && vm.tpl.file != nil {
		if err := vm.wakeClone(ctx); err != nil {
			if errors.Is(err, errTemplateLoad) {
				// Boot removes the template and boots again.
				vm.Close()
				ok = true
				return vm, err
			}
			return nil, err
		}
		vm.logf("guest started from VM template %s in %s", vm.tpl.path, time.Duration(vm.tplUse.Seconds*float64(time.Second)).Round(10*time.Millisecond))
	}
	ok = true
	return vm, nil
}

// Template says what the guest did with its VM template; nil when it had
// none (no BootSpec.TemplateDir, an interactive guest).
func (vm *VM) Template() *TemplateUse {
	if vm.tpl == nil && vm.tplUse.Note == "" {
		return nil
	}
	u := vm.tplUse
	return &u
}

func withDefaults(spec BootSpec) BootSpec {
	if spec.MemoryMB == 0 {
		spec.MemoryMB = 1024
	}
	if spec.CPUs == 0 {
		spec.CPUs = 1
	}
	if spec.Accel.Name == "" {
		spec.Accel = Accel{Name: AccelTCG, Reason: "no accelerator chosen"}
	}
	if spec.BootTimeout == 0 {
		spec.BootTimeout = 90 * time.Second
		if spec.Accel.Name == AccelKVM {
			spec.BootTimeout = 30 * time.Second
		}
	}
	return spec
}

// AgentGoneMarker is what the guest image prints on the console when its
// agent has exited without powering the guest off (crashed or killed),
// before it powers off.
const AgentGoneMarker = "kata-cr: the guest agent exited without powering off"

// baseCmdline is always on the guest's kernel command line: the console is
// the first serial port, a panic stops the guest at once (with -no-reboot
// qemu then exits), and the boot is quiet so the console log stays short.
// The rest follows Kata's defaults and shortens a boot under TCG.
var baseCmdline = []string{
	agentapi.GuestMarker, "console=ttyS0", "quiet", "panic=-1", "oops=panic",
	"i8042.noaux=1", "i8042.nopnp=1", "i8042.dumbkbd=1", "i8042.direct=1",
	"cryptomgr.notests", "no_timer_check", "tsc=reliable", "net.ifnames=0",
}

// machineArgs are the arguments every guest kata-cr runs shares: the
// machine, accelerator, CPU, memory, no default devices, the kernel and
// initramfs, the kernel command line.
func machineArgs(spec BootSpec) []string {
	a := []string{
		"-name", "kata-cr",
		"-machine", "q35",
		"-accel", spec.Accel.Name,
	}
	cpu := spec.CPU
	switch {
	case cpu != "":
	case spec.Accel.Name == AccelKVM:
		cpu = "host"
	default:
		cpu = "max"
	}
	return append(a, "-cpu", cpu,
		"-m", strconv.Itoa(spec.MemoryMB),
		"-smp", strconv.Itoa(spec.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
		"-no-reboot",
		"-kernel", spec.Kernel,
		"-initrd", spec.Initrd,
		"-append", strings.Join(append(append([]string{}, baseCmdline...), spec.Cmdline...), " "),
	)
}

// qemuArgs builds the qemu command line. The serial console goes to the
// console log (and to stdio when interactive), the agent's two ports are
// virtio-serial ports whose chardevs connect to the host's listening
// sockets.
func qemuArgs(spec BootSpec, console, ctlSock, dataSock string) []string {
	a := machineArgs(spec)
	if spec.Interactive {
		a = append(a,
			"-chardev", "stdio,id=con,mux=on,signal=off,logfile="+console,
			"-serial", "chardev:con",
			"-mon", "chardev=con,mode=readline",
		)
	} else {
		a = append(a,
			"-chardev", "file,id=con,path="+console,
			"-serial", "chardev:con",
			"-monitor", "none",
		)
	}
	a = append(a,
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=ctl,path="+ctlSock,
		"-device", "virtserialport,bus=vser0.0,chardev=ctl,name="+agentapi.ControlPort,
		"-chardev", "socket,id=data,path="+dataSock,
		"-device", "virtserialport,bus=vser0.0,chardev=data,name="+agentapi.DataPort,
	)
	for i, sh := range spec.Shares {
		// security_model=none shows the guest the host's owners and
		// modes; multidevs=remap keeps inode numbers unique when the
		// directory spans several host file systems. A comma in a
		// qemu option value is written twice.
		fsdev := fmt.Sprintf("local,id=fs%d,path=%s,security_model=none,multidevs=remap", i, strings.ReplaceAll(sh.Path, ",", ",,"))
		if sh.ReadOnly {
			fsdev += ",readonly=on"
		}
		a = append(a, "-fsdev", fsdev, "-device", fmt.Sprintf("virtio-9p-pci,fsdev=fs%d,mount_tag=%s", i, sh.Tag))
	}
	return a
}

func listenUnix(path string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

// lookQEMU finds the qemu binary.
func lookQEMU(name string) (string, error) {
	if name == "" {
		name = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install qemu-system-x86 (apt-get install qemu-system-x86) or pass its path", name)
	}
	return p, nil
}

func (vm *VM) acceptData() {
	c, err := vm.dataLn.Accept()
	if err != nil {
		return
	}
	select {
	case <-vm.closed:
		_ = c.Close()
	default:
		vm.dataConn <- c
	}
}

func (vm *VM) readEvents() {
	defer close(vm.events)
	dec := agentapi.NewDecoder(vm.ctl)
	for {
		var ev agentapi.Event
		if err := dec.Decode(&ev); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				vm.logf("agent channel: %v", err)
			}
			return
		}
		select {
		case vm.events <- ev:
		case <-vm.closed:
			return
		}
	}
}

func (vm *VM) logf(format string, args ...any) {
	if vm.spec.Logf != nil {
		vm.spec.Logf(format, args...)
	}
}

// Args returns qemu's arguments (without the binary).
func (vm *VM) Args() []string { return append([]string(nil), vm.args...) }

// PID is qemu's process ID, 0 before it started.
func (vm *VM) PID() int {
	if vm.cmd == nil || vm.cmd.Process == nil {
		return 0
	}
	return vm.cmd.Process.Pid
}

// CommandLine returns the qemu command, quoted for reading.
func (vm *VM) CommandLine() string { return quoteArgs(append([]string{vm.cmd.Path}, vm.args...)) }

// BootTime is the time from starting qemu to the agent's hello, zero
// before the hello.
func (vm *VM) BootTime() time.Duration {
	if !vm.hello {
		return 0
	}
	return vm.helloAt.Sub(vm.started)
}

// Send writes one message to the agent.
func (vm *VM) Send(m agentapi.HostMessage) error {
	if err := vm.enc.Encode(m); err != nil {
		return fmt.Errorf("send %s to guest agent: %w", m.Kind, err)
	}
	return nil
}

// Data returns the host end of the bulk data port, waiting until qemu has
// connected it.
func (vm *VM) Data(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-vm.dataConn:
		vm.dataConn <- c
		return c, nil
	case <-vm.exited:
		return nil, vm.exitError()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Next returns the agent's next event. Until the agent's hello it enforces
// the boot timeout. When the guest stops it returns a *GuestError saying
// how (kernel panic, agent gone, qemu failure), or io.EOF after the
// agent's done event.
func (vm *VM) Next(ctx context.Context) (agentapi.Event, error) {
	var bootTimer <-chan time.Time
	if !vm.hello {
		t := time.NewTimer(time.Until(vm.started.Add(vm.spec.BootTimeout)))
		defer t.Stop()
		bootTimer = t.C
	}
	exited := vm.exited
	var drain <-chan time.Time
	for {
		select {
		case ev, ok := <-vm.events:
			if !ok {
				// The channel ended: qemu is gone or going.
				select {
				case <-vm.exited:
				case <-time.After(5 * time.Second):
					vm.kill()
				}
				return agentapi.Event{}, vm.exitError()
			}
			switch ev.Kind {
			case agentapi.EventHello:
				if !vm.hello {
					vm.hello, vm.helloAt = true, time.Now()
					vm.logf("agent up after %s", vm.helloAt.Sub(vm.started).Round(10*time.Millisecond))
					if vm.tpl != nil && vm.tpl.file == nil {
						vm.saveTemplate(ctx)
					}
				}
			case agentapi.EventDone:
				vm.done = true
			}
			return ev, nil
		case <-exited:
			// Let the reader hand over what the agent sent last.
			exited = nil
			drain = time.After(2 * time.Second)
		case <-drain:
			return agentapi.Event{}, vm.exitError()
		case <-bootTimer:
			vm.kill()
			return agentapi.Event{}, vm.fail(ErrBootTimeout, fmt.Sprintf("guest did not start its agent within %s (accelerator %s)", vm.spec.BootTimeout, vm.spec.Accel.Name))
		case <-ctx.Done():
			vm.kill()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return agentapi.Event{}, vm.fail(ErrJobTimeout, "guest job timed out")
			}
			return agentapi.Event{}, fmt.Errorf("guest: %w", ctx.Err())
		}
	}
}

// exitError says why qemu stopped, once it has.
func (vm *VM) exitError() error {
	if vm.done {
		return io.EOF
	}
	tail := vm.ConsoleTail(consoleTailLines)
	for _, l := range tail {
		i := strings.Index(l, "Kernel panic")
		if i < 0 {
			continue
		}
		// u-root's init exits, and the kernel panics, once the agent has
		// exited: that is the agent's failure, not the kernel's.
		if strings.Contains(l, "Attempted to kill init") {
			if vm.hello {
				return vm.failTail(ErrAgentExited, "guest agent exited before finishing its job (then init exited and the kernel panicked)", tail)
			}
			return vm.failTail(ErrGuestExited, "guest agent exited before it started talking to the host (then init exited and the kernel panicked)", tail)
		}
		return vm.failTail(ErrKernelPanic, "guest kernel panicked: "+strings.TrimSpace(l[i:]), tail)
	}
	for _, l := range tail {
		if strings.Contains(l, AgentGoneMarker) {
			if vm.hello {
				return vm.failTail(ErrAgentExited, "guest agent crashed: it exited before finishing its job", tail)
			}
			return vm.failTail(ErrGuestExited, "guest agent crashed before it started talking to the host", tail)
		}
	}
	if !vm.hello {
		if msg := qemuMessage(vm.stderr.String()); msg != "" && vm.exitCode() != 0 {
			return vm.failTail(ErrQEMU, "qemu failed: "+msg, tail)
		}
		return vm.failTail(ErrGuestExited, fmt.Sprintf("guest stopped before its agent started (qemu %s)", vm.exitStatus()), tail)
	}
	return vm.failTail(ErrQEMUStopped, fmt.Sprintf("guest agent stopped before finishing its job (qemu %s)", vm.exitStatus()), tail)
}

func (vm *VM) exitCode() int {
	if vm.cmd == nil || vm.cmd.ProcessState == nil {
		return -1
	}
	return vm.cmd.ProcessState.ExitCode()
}

func (vm *VM) exitStatus() string {
	if vm.cmd == nil || vm.cmd.ProcessState == nil {
		return "still running"
	}
	return vm.cmd.ProcessState.String()
}

// qemuMessage picks qemu's own error line out of its stderr: the first
// one that is not a warning, since what follows it (an assertion, a
// backtrace) is a consequence.
func qemuMessage(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.Contains(l, "terminating on signal") {
			continue
		}
		l = strings.TrimPrefix(l, "qemu-system-x86_64: ")
		if !strings.Contains(l, "warning:") {
			return l
		}
	}
	return ""
}

func (vm *VM) fail(err error, msg string) *GuestError {
	return vm.failTail(err, msg, vm.ConsoleTail(consoleTailLines))
}

func (vm *VM) failTail(err error, msg string, tail []string) *GuestError {
	return &GuestError{Err: err, Msg: msg, Console: tail, Stderr: vm.stderr.String()}
}

var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|c|[()][0-9A-Za-z])`)

// ConsoleTail returns the last n lines of the serial console, without
// terminal escapes.
func (vm *VM) ConsoleTail(n int) []string {
	return tailLines(vm.console, n)
}

func tailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	const window = 64 << 10
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-window, 0)
	buf := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil
	}
	text := ansiEscape.ReplaceAllString(string(buf), "")
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if i := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); i >= 0 {
			l = l[i+1:]
		}
		l = strings.TrimRight(l, "\r ")
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return excerpt.Last(lines, n)
}

// Wait waits up to timeout for qemu to exit by itself (the agent powers the
// guest off after its job) and kills it after that.
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case <-vm.exited:
		return nil
	case <-time.After(timeout):
		vm.kill()
		<-vm.exited
		return vm.fail(ErrAgentExited, fmt.Sprintf("guest did not power off within %s after its job", timeout))
	}
}

// kill stops qemu: SIGTERM first, so that an interactive qemu gives the
// terminal back, then SIGKILL to its whole process group.
func (vm *VM) kill() {
	if vm.cmd == nil || vm.cmd.Process == nil {
		return
	}
	select {
	case <-vm.exited:
		return
	default:
	}
	pid := vm.cmd.Process.Pid
	if vm.spec.Interactive {
		_ = vm.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-vm.exited:
			return
		case <-time.After(3 * time.Second):
		}
		_ = vm.cmd.Process.Kill()
	} else {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	select {
	case <-vm.exited:
	case <-time.After(10 * time.Second):
	}
}

// Close kills qemu if it still runs, closes the channels and removes the
// temporary files. It is safe to call more than once.
func (vm *VM) Close() error {
	vm.once.Do(func() {
		close(vm.closed)
		vm.kill()
		if vm.ctl != nil {
			_ = vm.ctl.Close()
		}
		if vm.ctlLn != nil {
			_ = vm.ctlLn.Close()
		}
		if vm.dataLn != nil {
			_ = vm.dataLn.Close()
		}
		select {
		case c := <-vm.dataConn:
			_ = c.Close()
		default:
		}
		if vm.dir != "" {
			vm.closeErr = os.RemoveAll(vm.dir)
		}
	})
	return vm.closeErr
}

// Result is what a job in a guest produced.
type Result struct {
	// Report is the last report the agent sent, nil if none.
	Report *reports.Report
	// Data holds the result events' data, in order.
	Data []agentapi.Event
	// Agent is what the agent said about itself.
	Agent *agentapi.AgentInfo
	// Args is qemu's arguments; CommandLine the whole command, quoted for
	// reading.
	Args        []string
	CommandLine string
	// Boot is the time from starting qemu to the agent's hello; Total
	// runs until the agent's done.
	Boot, Total time.Duration
	// Template says what the guest did with its VM template, nil without
	// one.
	Template *TemplateUse
	// Console is the end of the serial console.
	Console []string
}

// Run boots a guest, gives its agent job, passes every event to onEvent
// (which may be nil) and returns what the agent sent. The guest is always
// stopped and its temporary files removed before Run returns.
func Run(ctx context.Context, spec BootSpec, job agentapi.Job, onEvent func(agentapi.Event)) (*Result, error) {
	return RunWith(ctx, spec, job, func(_ *VM, ev agentapi.Event) error {
		if onEvent != nil {
			onEvent(ev)
		}
		return nil
	})
}

// RunWith is Run with a handler that also gets the VM, so that a job that
// moves bulk data (CRIU images) can use vm.Data while it runs. An error
// from handle stops the guest and is returned.
func RunWith(ctx context.Context, spec BootSpec, job agentapi.Job, handle func(*VM, agentapi.Event) error) (*Result, error) {
	vm, err := Boot(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	return vm.Run(ctx, job, handle)
}

// WaitHello reads the agent's events until its hello: the guest has
// booted and waits for its job. A guest booted ahead of its job (the
// restore guest booting while the first one dumps) waits here, so that its
// boot timeout and its failures count from its own start; Run then sends
// the job at once.
func (vm *VM) WaitHello(ctx context.Context) error {
	for !vm.hello {
		ev, err := vm.Next(ctx)
		if err != nil {
			return err
		}
		if ev.Kind == agentapi.EventHello {
			vm.helloEv = &ev
		}
	}
	return nil
}

// Run gives the booted guest's agent job (at its hello, or at once when
// WaitHello has seen it), passes every event to handle and returns what
// the agent sent. The caller still Closes the VM.
func (vm *VM) Run(ctx context.Context, job agentapi.Job, handle func(*VM, agentapi.Event) error) (*Result, error) {
	res := &Result{Args: vm.Args(), CommandLine: vm.CommandLine()}
	defer func() { res.Template = vm.Template() }()
	var jobErr error
	if ev := vm.helloEv; ev != nil {
		if handle != nil {
			if err := handle(vm, *ev); err != nil {
				res.Console = vm.ConsoleTail(consoleTailLines)
				return res, err
			}
		}
		res.Agent = ev.Agent
		res.Boot = vm.BootTime()
		if err := vm.Send(agentapi.HostMessage{Kind: agentapi.HostJob, Job: &job}); err != nil {
			res.Console = vm.ConsoleTail(consoleTailLines)
			return res, err
		}
	}
	for {
		ev, err := vm.Next(ctx)
		if err != nil {
			res.Console = vm.ConsoleTail(consoleTailLines)
			return res, err
		}
		if handle != nil {
			if err := handle(vm, ev); err != nil {
				res.Console = vm.ConsoleTail(consoleTailLines)
				return res, err
			}
		}
		switch ev.Kind {
		case agentapi.EventHello:
			res.Agent = ev.Agent
			res.Boot = vm.BootTime()
			if err := vm.Send(agentapi.HostMessage{Kind: agentapi.HostJob, Job: &job}); err != nil {
				res.Console = vm.ConsoleTail(consoleTailLines)
				return res, err
			}
		case agentapi.EventReport:
			res.Report = ev.Report
		case agentapi.EventResult:
			res.Data = append(res.Data, ev)
		case agentapi.EventError:
			jobErr = fmt.Errorf("guest agent: %s", ev.Error)
		case agentapi.EventDone:
			res.Total = time.Since(vm.started)
			_ = vm.Send(agentapi.HostMessage{Kind: agentapi.HostAck})
			_ = vm.Wait(20 * time.Second)
			res.Console = vm.ConsoleTail(consoleTailLines)
			return res, jobErr
		}
	}
}

// syncBuffer is a bytes.Buffer safe for qemu's output goroutines and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// quoteArgs renders a command line for logs, quoting what a shell would
// split. It is only for display: commands always run from argument lists.
func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>(){}*?[]#~") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}
