package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

func init() { commandConstructors = append(commandConstructors, newGuestCmd) }

// The --accel values.
const (
	accelAuto = "auto"
	accelKVM  = vm.AccelKVM
	accelTCG  = vm.AccelTCG
)

// guestOptions say which guest to build and how to boot it; doctor, guest
// shell and image build share them. The zero value means every default, and
// the struct stays comparable, like the options structs of the commands
// that embed it.
type guestOptions struct {
	// Kernel, KernelConfig and Modules are --kernel, --kernel-config and
	// --modules; KernelVersion (--kernel-version) picks a cached kernel.
	Kernel, KernelConfig, Modules, KernelVersion string
	// CRIUPath is the host criu to ship (--criu); CRIUSuite (--criu-suite
	// host or a suite of guestimage.Suites) and Rootfs (--rootfs TAR) ship
	// another CRIU instead.
	CRIUPath, CRIUSuite, Rootfs string
	// Include are the --include HOST[:GUEST] values.
	Include pathList
	// Accel is auto (or empty), kvm or tcg.
	Accel string
	// Timeout bounds the whole guest run (0: defaultGuestTimeout);
	// MemoryMB and CPUs size the guest (0: 1024 MB, 1 vCPU).
	Timeout  time.Duration
	MemoryMB int
	CPUs     int
	// Verbose prints progress and the qemu command line even when stderr
	// is not a terminal.
	Verbose bool
	// VMTemplate starts guests from VM templates (--vm-template).
	VMTemplate bool
}

// addFlags registers the flags of building and booting a guest on f.
// withShared is false where the command already has --kernel-config and
// --criu (doctor) and copies them in itself.
func (o *guestOptions) addFlags(f *pflag.FlagSet, withShared bool) {
	o.addBuildFlags(f, withShared)
	f.StringVar(&o.Accel, "accel", "", "accelerator: auto (the default: KVM when a test guest boots under it), kvm or tcg")
	f.DurationVar(&o.Timeout, "timeout", 0, "give up on the guest after this long (default 5m)")
	f.IntVar(&o.MemoryMB, "memory", 0, "guest memory in `MB` (default 1024)")
	f.IntVar(&o.CPUs, "cpus", 0, "guest vCPUs (default 1)")
	f.BoolVar(&o.VMTemplate, "vm-template", false, "start the guest from a VM template, as Kata's VM factory does (enable_template): the first guest of a configuration is saved when its agent is up, later ones start from that snapshot instead of booting. Clones share the template's kernel memory (its address layout); their clock and random pool are renewed")
}

// addBuildFlags registers the flags that say what goes into the guest
// image: the kernel, CRIU and extra files.
func (o *guestOptions) addBuildFlags(f *pflag.FlagSet, withShared bool) {
	f.StringVar(&o.Kernel, "kernel", "", "guest kernel `FILE` (a vmlinuz) instead of Kata's or the cached one")
	f.StringVar(&o.Modules, "modules", "", "the guest kernel's modules `DIR` (/lib/modules/RELEASE, with modules.dep)")
	f.StringVar(&o.KernelVersion, "kernel-version", "", "use the cached kernel `VERSION` fetched by make guest-kernel (6.1, 6.12, 7.3), or the name of a kernel kata-cr kernel build built")
	f.StringVar(&o.CRIUSuite, "criu-suite", "", "ship CRIU from this Debian `SUITE` instead of the host's: host, bookworm (CRIU 3.17.1), trixie (4.1.1), forky or sid (4.2.1)")
	f.StringVar(&o.Rootfs, "rootfs", "", "ship CRIU from this Debian rootfs `TAR` instead of the host's")
	f.Var(&o.Include, "include", "add `HOST[:GUEST]` to the guest image, with its shared libraries (repeatable)")
	f.BoolVarP(&o.Verbose, "verbose", "v", false, "print progress and the qemu command line on stderr")
	if withShared {
		f.StringVar(&o.KernelConfig, "kernel-config", "", "the guest kernel's config `FILE`, shipped beside it in the guest")
		f.StringVar(&o.CRIUPath, "criu", "", "host criu binary to ship in the guest (default: criu on PATH, then /usr/sbin/criu)")
	}
}

// defaultGuestTimeout bounds a guest run: a doctor run under TCG takes
// about half a minute.
const defaultGuestTimeout = 5 * time.Minute

// validate checks the guest flags that need more than their type and fills
// in the defaults.
func (o *guestOptions) validate() error {
	if o.Accel == "" {
		o.Accel = accelAuto
	}
	if o.Timeout == 0 {
		o.Timeout = defaultGuestTimeout
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 1024
	}
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	switch o.Accel {
	case accelAuto, accelKVM, accelTCG:
	default:
		return usagef("--accel %q: use auto, kvm or tcg", o.Accel)
	}
	if o.CRIUSuite != "" && o.CRIUSuite != "host" {
		if _, err := guestimage.LookupSuite(o.CRIUSuite); err != nil {
			return usagef("--criu-suite %q: use host, %s", o.CRIUSuite, strings.Join(guestimage.SuiteNames(), ", "))
		}
	}
	if o.CRIUSuite != "" && o.Rootfs != "" {
		return usagef("--criu-suite and --rootfs both given: use one")
	}
	if o.Kernel != "" && o.KernelVersion != "" {
		return usagef("--kernel and --kernel-version both given: use one")
	}
	if o.Timeout <= 0 {
		return usagef("--timeout %s: give a positive duration such as 5m", o.Timeout)
	}
	if o.MemoryMB < 128 {
		return usagef("--memory %d: give at least 128 (MB)", o.MemoryMB)
	}
	if o.CPUs < 1 {
		return usagef("--cpus %d: give at least 1", o.CPUs)
	}
	for _, inc := range o.Include.List() {
		e, err := guestimage.ParseInclude(inc)
		if err != nil {
			return usageError{err}
		}
		f, err := safefile.Open(e.Host)
		if err != nil {
			return usagef("--include %s: %v: give a readable regular file", inc, unwrapPath(err))
		}
		f.Close()
	}
	return nil
}

// unwrapPath drops the operation and path an *fs.PathError repeats, for
// messages that name the path already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// guest is a guest ready to boot: its kernel, its image and the
// accelerator, with how each was found.
type guest struct {
	kernel      *kernel.Guest
	image       string
	imageCached bool
	imageTime   time.Duration
	criu        *guestimage.CRIUPayload
	accel       vm.Accel
	cacheDir    string
	// shares are the host directories the guest gets over virtio-9p (a
	// bundle's rootfs).
	shares []vm.Share
}

// progress prints what kata-cr is doing on stderr: on a terminal, or
// always with --verbose.
type progress struct {
	w       io.Writer
	on      bool
	verbose bool
	// term is a terminal on stderr: only there a bar redraws itself.
	term  bool
	start time.Time
	// lastBar is when the bar was last drawn.
	lastBar time.Time
}

func newProgress(deps *Deps, verbose bool) *progress {
	term := deps.IsTerminal(deps.Stderr)
	return &progress{w: deps.Stderr, on: verbose || term, verbose: verbose, term: term, start: time.Now()}
}

// bar draws, on a terminal only, how much of total bytes of what is done,
// at most five times a second and once more when it is complete.
func (p *progress) bar(what string, done, total int64) {
	if !p.term || total <= 0 {
		return
	}
	finished := done >= total
	if !finished && time.Since(p.lastBar) < 200*time.Millisecond {
		return
	}
	p.lastBar = time.Now()
	frac := min(float64(done)/float64(total), 1)
	const width = 30
	fill := int(frac * width)
	end := ""
	if finished {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\rkata-cr: [%6.1fs] %s [%s%s] %3.0f%% %s of %s%s", time.Since(p.start).Seconds(), what,
		strings.Repeat("#", fill), strings.Repeat(".", width-fill), frac*100, humanBytes(done), humanBytes(total), end)
}

// humanBytes writes n in KiB or MiB.
func humanBytes(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// progressReader draws a bar of what was read through it.
type progressReader struct {
	r     io.Reader
	n     int64
	total int64
	what  string
	p     *progress
}

func (c *progressReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.p != nil {
		c.p.bar(c.what, min(c.n, c.total), c.total)
	}
	return n, err
}

func (p *progress) printf(format string, args ...any) {
	if p.on {
		p.line(format, args...)
	}
}

// debugf prints only with --verbose (the qemu command line).
func (p *progress) debugf(format string, args ...any) {
	if p.verbose {
		p.line(format, args...)
	}
}

// line prints one progress line with the time since the command started;
// text from the guest cannot drive the terminal.
func (p *progress) line(format string, args ...any) {
	msg := reports.TerminalText(fmt.Sprintf(format, args...))
	fmt.Fprintf(p.w, "kata-cr: [%6.1fs] %s\n", time.Since(p.start).Seconds(), msg)
}

// event shows an agent event.
func (p *progress) event(ev agentapi.Event) {
	switch ev.Kind {
	case agentapi.EventHello:
		if ev.Agent != nil {
			p.printf("guest up: kernel %s, agent on a %s root", ev.Agent.KernelRelease, ev.Agent.Root)
			if b := ev.Agent.Boot; b != nil {
				p.debugf("guest boot (its uptime): agent started %.2fs, root switched %.2fs, modules loaded %.2fs, port open %.2fs",
					b.AgentStart, b.RootSwitched, b.ModulesLoaded, b.PortOpen)
			}
		}
	case agentapi.EventProgress:
		p.printf("guest: %s", ev.Message)
	case agentapi.EventLog:
		p.debugf("guest: %s", ev.Message)
	case agentapi.EventError:
		p.printf("guest: error: %s", ev.Error)
	}
}

// resolveGuest finds the guest kernel and the CRIU it will run, without
// building anything: enough to refuse a checkpoint from another kernel or
// CRIU before the image is built.
func resolveGuest(ctx context.Context, o *guestOptions, p *progress) (*guest, error) {
	g := &guest{cacheDir: kernel.CacheDir()}
	k, err := kernel.Find(kernel.FindOptions{
		Kernel: o.Kernel, Config: o.KernelConfig, Modules: o.Modules,
		Version: o.KernelVersion, CacheDir: g.cacheDir,
	})
	if err != nil {
		return nil, err
	}
	g.kernel = k
	p.printf("guest kernel %s (%s)", k.Release, k.Source)
	switch {
	case o.Rootfs != "":
		p.printf("extracting CRIU from %s", o.Rootfs)
		g.criu, err = guestimage.RootfsCRIU(ctx, o.Rootfs, g.cacheDir)
	case o.CRIUSuite != "" && o.CRIUSuite != "host":
		p.printf("getting CRIU from Debian %s (the first time builds a rootfs with mmdebstrap)", o.CRIUSuite)
		g.criu, err = guestimage.SuiteCRIU(ctx, g.cacheDir, o.CRIUSuite)
	default:
		g.criu, err = guestimage.HostCRIU(o.CRIUPath)
	}
	if err != nil {
		return nil, err
	}
	return g, nil
}

// prepareGuest resolves the guest (resolveGuest), then builds its image
// and picks the accelerator.
func prepareGuest(ctx context.Context, o *guestOptions, p *progress) (*guest, error) {
	g, err := resolveGuest(ctx, o, p)
	if err != nil {
		return nil, err
	}
	return g, g.build(ctx, o, p)
}

// build builds (or takes from the cache) the guest image and picks the
// accelerator.
func (g *guest) build(ctx context.Context, o *guestOptions, p *progress) error {
	k := g.kernel
	var extra []guestimage.ExtraFile
	for _, inc := range o.Include.List() {
		e, err := guestimage.ParseInclude(inc)
		if err != nil {
			return usageError{err}
		}
		extra = append(extra, e)
	}
	start := time.Now()
	var err error
	g.image, g.imageCached, err = guestimage.Build(ctx, guestimage.Spec{
		CacheDir: g.cacheDir, Version: Version,
		KernelRelease: k.Release, ModulesDir: k.ModulesDir, KernelConfig: k.Config,
		CRIU: g.criu, Extra: extra, Logf: p.printf,
	})
	if err != nil {
		return err
	}
	g.imageTime = time.Since(start)
	if g.imageCached {
		p.printf("guest image %s (cached)", g.image)
	}
	g.accel, err = pickAccel(ctx, o.Accel, k, g.cacheDir, p)
	return err
}

// pickAccel decides between KVM and TCG, probing unless --accel says.
func pickAccel(ctx context.Context, want string, k *kernel.Guest, cacheDir string, p *progress) (vm.Accel, error) {
	switch want {
	case accelKVM:
		return vm.Accel{Name: vm.AccelKVM, Reason: "--accel kvm"}, nil
	case accelTCG:
		return vm.Accel{Name: vm.AccelTCG, Reason: "--accel tcg"}, nil
	}
	bare, err := guestimage.BuildBare(cacheDir, "")
	if err != nil {
		return vm.Accel{}, err
	}
	p.printf("probing KVM")
	a := vm.ProbeKVM(ctx, vm.KVMProbe{Kernel: k.Image, Initrd: bare, CacheDir: cacheDir})
	// An interrupted probe says nothing about KVM.
	if err := ctx.Err(); err != nil {
		return vm.Accel{}, fmt.Errorf("probe KVM: %w", err)
	}
	p.printf("accelerator %s: %s", a.Name, a.Reason)
	return a, nil
}

// bootSpec is how to boot g.
func (g *guest) bootSpec(o *guestOptions, p *progress) vm.BootSpec {
	spec := vm.BootSpec{
		Kernel: g.kernel.Image, Initrd: g.image, Accel: g.accel,
		MemoryMB: o.MemoryMB, CPUs: o.CPUs, Logf: p.debugf, Shares: g.shares,
	}
	if o.VMTemplate {
		spec.TemplateDir = filepath.Join(g.cacheDir, "vm-templates")
	}
	return spec
}

// runCheckpointJob boots the guest for a checkpoint job and returns its
// report, completed with the target and how the guest ran.
func (g *guest) runCheckpointJob(ctx context.Context, deps *Deps, o *guestOptions, p *progress, job agentapi.Job, handle func(*vm.VM, agentapi.Event) error) (*reports.Report, error) {
	res, err := vm.RunWith(ctx, g.bootSpec(o, p), job, handle)
	if err != nil {
		reportGuestError(deps, err)
		return nil, guestRunError(err, o.Timeout)
	}
	r := res.Report
	if r == nil || r.Checkpoint == nil {
		return nil, errors.New("guest agent finished without sending a checkpoint report")
	}
	r.Command = "checkpoint"
	g.fillTarget(r)
	r.Findings = append(r.Findings, g.bootFinding(res))
	return r, nil
}

// bootFinding records how the guest ran, with the qemu command line as
// evidence, so that a JSON report says what was booted and how.
func (g *guest) bootFinding(res *vm.Result) reports.Finding {
	image := fmt.Sprintf("guest image: %s (built in %s)", g.image, g.imageTime.Round(100*time.Millisecond))
	if g.imageCached {
		image = fmt.Sprintf("guest image: %s (cached)", g.image)
	}
	f := reports.Finding{
		ID: "guest.boot", Category: "guest", Level: reports.Optional, Status: reports.Pass,
		Summary: fmt.Sprintf("guest kernel %s booted under %s in %s; the job took %s",
			g.kernel.Release, strings.ToUpper(g.accel.Name), res.Boot.Round(100*time.Millisecond),
			(res.Total - res.Boot).Round(100*time.Millisecond)),
		Evidence: []string{
			"kernel: " + g.kernel.Image + " (" + g.kernel.Source + ")",
			"accelerator: " + g.accel.Name + ": " + g.accel.Reason,
			image,
			"qemu: " + res.CommandLine,
		},
	}
	if g.criu != nil {
		f.Evidence = append(f.Evidence, fmt.Sprintf("criu: %s %s from %s", g.criu.Binary, g.criu.Version, g.criu.Suite))
	}
	if a := res.Agent; a != nil {
		f.Evidence = append(f.Evidence, fmt.Sprintf("agent: %s on a %s root", a.Version, a.Root))
	}
	if t := res.Template; t != nil {
		switch {
		case t.Cloned:
			f.Summary = fmt.Sprintf("guest kernel %s started under %s from a VM template in %s (loaded in %.2fs); the job took %s",
				g.kernel.Release, strings.ToUpper(g.accel.Name), res.Boot.Round(10*time.Millisecond), t.Seconds,
				(res.Total - res.Boot).Round(100*time.Millisecond))
			f.Evidence = append(f.Evidence, "VM template: started from "+t.Path)
		case t.Saved:
			f.Evidence = append(f.Evidence, fmt.Sprintf("VM template: saved as %s in %.2fs, once the agent was up", t.Path, t.Seconds))
		}
		if t.Note != "" {
			f.Evidence = append(f.Evidence, "VM template: "+t.Note)
		}
	}
	return f
}

// reportGuestError prints the console tail of a failed guest on stderr;
// the error itself is printed as one line by the caller.
func reportGuestError(deps *Deps, err error) {
	var ge *vm.GuestError
	if !errors.As(err, &ge) || len(ge.Console) == 0 {
		return
	}
	fmt.Fprintf(deps.Stderr, "kata-cr: guest console, last %d lines:\n", len(ge.Console))
	for _, l := range ge.Console {
		fmt.Fprintf(deps.Stderr, "  | %s\n", l)
	}
}

// guestRunError words the errors of a guest run that the user caused:
// Ctrl-C and the --timeout, which may also end the steps before the boot
// (image build, KVM probe).
func guestRunError(err error, timeout time.Duration) error {
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted: the guest was stopped")
	case errors.Is(err, vm.ErrJobTimeout), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("the guest did not finish within --timeout %s: %w", timeout, err)
	}
	return err
}

// signalContext cancels ctx on Ctrl-C or SIGTERM, so that qemu is killed and
// temporary files removed on the way out.
func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// guestShellOptions are the flags of kata-cr guest shell.
type guestShellOptions struct {
	guest guestOptions
	// NoModules leaves CRIU's modules unloaded, as Kata boots the guest.
	NoModules bool
}

func newGuestCmd(deps *Deps, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "guest",
		Short: "Work with the Kata-style guest that kata-cr boots",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return c.Help()
		},
	}
	c.AddCommand(newGuestShellCmd(deps, g))
	return c
}

func newGuestShellCmd(deps *Deps, _ *globalOptions) *cobra.Command {
	o := &guestShellOptions{}
	c := &cobra.Command{
		Use:   "shell",
		Short: "Boot the guest and open a shell in it",
		Long: `shell boots the same guest as kata-cr doctor (same kernel, image and CRIU)
and runs an interactive busybox shell on its console, with CRIU's modules
loaded. The guest powers off when the shell exits; Ctrl-a x stops qemu.`,
		Example: `  kata-cr guest shell
  kata-cr guest shell --kernel-version 7.3 --criu-suite trixie`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.guest.validate(); err != nil {
				return err
			}
			return runGuestShell(c.Context(), deps, o)
		},
	}
	o.guest.addFlags(c.Flags(), true)
	c.Flags().BoolVar(&o.NoModules, "no-modules", false, "leave CRIU's modules unloaded, as Kata boots the guest")
	return c
}

func runGuestShell(ctx context.Context, deps *Deps, o *guestShellOptions) error {
	ctx, stop := signalContext(ctx)
	defer stop()
	p := newProgress(deps, o.guest.Verbose)
	gst, err := prepareGuest(ctx, &o.guest, p)
	if err != nil {
		return guestRunError(err, 0)
	}
	so := agentapi.ShellOptions{Term: os.Getenv("TERM")}
	if ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ); err == nil {
		so.Rows, so.Cols = int(ws.Row), int(ws.Col)
	}
	opts, err := json.Marshal(so)
	if err != nil {
		return err
	}
	spec := gst.bootSpec(&o.guest, p)
	spec.Interactive = true
	spec.Stdin, spec.Stdout = os.Stdin, deps.Stdout
	fmt.Fprintf(deps.Stderr, "kata-cr: booting the guest (%s); exit the shell to power it off, or press Ctrl-a x\n", gst.accel.Name)
	job := agentapi.Job{Kind: agentapi.JobShell, LoadModules: !o.NoModules, Options: opts}
	_, err = vm.Run(ctx, spec, job, p.event)
	if errors.Is(err, vm.ErrQEMUStopped) {
		// Ctrl-a x: the user stopped qemu while the shell ran. A crashed
		// agent or a panic is another error and shows the console.
		fmt.Fprintln(deps.Stderr, "kata-cr: qemu stopped before the shell exited")
		return nil
	}
	if err != nil {
		reportGuestError(deps, err)
		return guestRunError(err, 0)
	}
	return nil
}

// pathList is a repeatable flag kept as one newline-separated string, so
// that options structs holding it stay comparable.
type pathList string

func (p *pathList) Set(v string) error {
	if strings.Contains(v, "\n") {
		return fmt.Errorf("%q: a path with a newline", v)
	}
	if *p != "" {
		*p += "\n"
	}
	*p += pathList(v)
	return nil
}

func (p *pathList) String() string { return strings.ReplaceAll(string(*p), "\n", ",") }

func (p *pathList) Type() string { return "stringArray" }

// List returns the values in the order given.
func (p pathList) List() []string {
	if p == "" {
		return nil
	}
	return strings.Split(string(p), "\n")
}
