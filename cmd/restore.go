package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

func init() { commandConstructors = append(commandConstructors, newRestoreCmd) }

// restoreCmdOptions are the flags of kata-cr restore.
type restoreCmdOptions struct {
	ImagesDir string
	// Import is a checkpoint archive to restore (--import FILE.tar).
	Import string
	// VerifyExec replaces the checkpoint's own --verify-exec commands.
	VerifyExec probeList
	guest      guestOptions
}

func newRestoreCmd(deps *Deps, g *globalOptions) *cobra.Command {
	return newRestoreCmdWith(deps, g, nil)
}

// newRestoreCmdWith builds the command; a non-nil runF replaces the run, so
// that tests can capture the parsed options.
func newRestoreCmdWith(deps *Deps, g *globalOptions, runF func(context.Context, *restoreCmdOptions) error) *cobra.Command {
	o := &restoreCmdOptions{}
	c := &cobra.Command{
		Use:   "restore --images-dir DIR | --import FILE.tar",
		Short: "Restore a checkpoint taken by kata-cr checkpoint in a fresh Kata-style guest",
		Long: `restore checks the checkpoint in DIR (every file against the manifest's
checksums, and the kernel, CRIU and architecture it was taken on against the
guest about to boot) and refuses it before booting when anything differs.
Then it boots a fresh guest, prepares the container's rootfs and sandbox,
replays the container's changed files, restores with the sandbox's files
mapped back onto the bind mounts, and verifies that the workload carried on
(the counter continues, the lock is held, the sandbox's /etc/hosts is there).
The guest image gets the files the checkpoint's image had (its --include
files and the workload's binaries, such as nginx), as the manifest records
them; each must still be on this host, unchanged (its checksum is in the
manifest), or the checkpoint is refused (images.include-missing,
images.include-changed). --include NEW_PATH:GUEST_PATH gives a file that
moved; it must have the recorded checksum.
A checkpoint of an OCI bundle (--bundle) needs the bundle's rootfs, shared
with the guest again, unchanged (images.bundle-missing,
images.bundle-changed). The checkpoint's --verify-exec commands run in the
restored container again; --verify-exec here replaces them.
--import FILE.tar restores the archive kata-cr checkpoint --export wrote:
every entry is checked against the manifest the archive carries while it is
extracted into a new 0700 directory (--images-dir names it and keeps it);
an entry that differs, is not listed, leaves the directory, or is a link or
a device node refuses the archive in one line naming the entry
(images.checksum, archive.unsafe-entry, archive.unexpected-entry, ...).

Exit codes: 0 restored and verified; 1 the checkpoint is refused (the reason
ID, such as images.kernel-mismatch or images.checksum, is in the message) or
the guest failed; 2 bad command line; 3 the restore or its verification
failed.`,
		Example: `  kata-cr restore --images-dir /tmp/counter
  kata-cr restore --images-dir /tmp/counter -o json
  kata-cr restore --import /tmp/counter.tar`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.ImagesDir == "" && o.Import == "" {
				return usagef("--images-dir or --import is required: give the directory kata-cr checkpoint wrote, or its --export archive")
			}
			if err := o.guest.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(c.Context(), o)
			}
			return runRestore(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.ImagesDir, "images-dir", "", "the checkpoint `DIR` written by kata-cr checkpoint (with --import: the new directory to extract the archive into, kept)")
	f.StringVar(&o.Import, "import", "", "restore the checkpoint archive `FILE` written by kata-cr checkpoint --export: checked against its manifest and extracted into a new 0700 directory first")
	f.Var(&o.VerifyExec, "verify-exec", "run `CMD` in the restored container instead of the checkpoint's own --verify-exec commands; verified only when every one exits 0 (repeatable; "+probeSyntax+")")
	o.guest.addFlags(f, true)
	return c
}

// runRestore refuses a damaged or foreign checkpoint before booting, then
// restores it in a fresh guest.
func runRestore(ctx context.Context, deps *Deps, g *globalOptions, o *restoreCmdOptions) error {
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	set, cleanup, err := o.openSet()
	if err != nil {
		return err
	}
	defer cleanup()
	if err := o.guest.includeFrom(set); err != nil {
		return err
	}
	if probs := images.CheckBundle(set.Manifest); len(probs) > 0 {
		return &images.RefusedError{Dir: set.Dir, Problems: probs}
	}
	if o.VerifyExec != "" {
		set.Manifest.VerifyExec = o.VerifyExec.Argvs()
	}
	w, err := workloadFor(set.Manifest)
	if err != nil {
		return err
	}
	if err := o.guest.includeWorkload(w); err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.guest.Timeout)
	defer cancel()
	p := newProgress(deps, o.guest.Verbose)
	gst, err := resolveGuest(ctx, &o.guest, p)
	if err != nil {
		return err
	}
	// Everything that can refuse the checkpoint does so before the image
	// is built and a guest boots: kernel, CRIU, architecture, checksums.
	if err := set.Verify(gst.compat()); err != nil {
		return err
	}
	if b := set.Manifest.Bundle; b != nil {
		gst.shares = append(gst.shares, bundleShare(b.Rootfs))
	}
	if err := gst.build(ctx, &o.guest, p); err != nil {
		return err
	}
	m := set.Manifest
	r := reports.New("restore", Version)
	r.Checkpoint = &reports.Checkpoint{
		Workload: m.Workload, Command: m.Command, Stage: "restore", DumpOK: true, DumpOptions: m.DumpOptions.DumpArgs(),
		ImagesDir: set.Dir, ImageBytes: set.Size(), WantRestore: true, Archive: o.Import,
	}
	if err := restoreHalf(ctx, deps, o.guest, gst, set, r, p); err != nil {
		return err
	}
	gst.fillTarget(r)
	return render(deps, g, r)
}

// includeFrom adds the files the checkpoint's guest image had, as its
// manifest records them, to the image about to be built, after checking
// that each is still the file the checkpoint was taken with. The user's own
// --include for a guest path takes the place of the recorded host file.
func (o *guestOptions) includeFrom(set *images.Set) error {
	given := map[string]string{}
	for _, inc := range o.Include.List() {
		e, err := guestimage.ParseInclude(inc)
		if err != nil {
			return usageError{err}
		}
		given[e.Guest] = e.Host
	}
	if probs := images.CheckIncludes(set.Manifest, given); len(probs) > 0 {
		return &images.RefusedError{Dir: set.Dir, Problems: probs}
	}
	for _, inc := range set.Manifest.Includes {
		if _, ok := given[inc.Guest]; ok {
			continue
		}
		if err := o.Include.Set(inc.Host + ":" + inc.Guest); err != nil {
			return err
		}
		given[inc.Guest] = inc.Host
	}
	return nil
}

// workloadFor is the workload a checkpoint holds, to add what it needs to
// the restoring guest.
func workloadFor(m images.Manifest) (container.Workload, error) {
	if b := m.Bundle; b != nil && b.Spec != nil {
		return container.FromBundle(b.Spec, container.BundleRootfsTag), nil
	}
	w, err := container.LookupWorkload(m.Workload, m.Command)
	if err != nil {
		return w, fmt.Errorf("the checkpoint's workload: %w", err)
	}
	return w, nil
}

// openCheckpoint opens an images directory and checks every file against
// its manifest: what needs no guest is refused before one boots.
func openCheckpoint(dir string) (*images.Set, error) {
	set, err := images.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := set.VerifyFiles(); err != nil {
		return nil, err
	}
	return set, nil
}
