package cmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/internal/filecopy"
)

func init() { commandConstructors = append(commandConstructors, newImageCmd) }

// imageBuildOptions are the flags of kata-cr image build.
type imageBuildOptions struct {
	guest guestOptions
	// Out is where the image goes (-o FILE).
	Out string
}

func newImageCmd(deps *Deps, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Build the guest image kata-cr boots",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return c.Help()
		},
	}
	c.AddCommand(newImageBuildCmd(deps, g))
	return c
}

func newImageBuildCmd(deps *Deps, _ *globalOptions) *cobra.Command {
	o := &imageBuildOptions{}
	c := &cobra.Command{
		Use:   "build -o FILE",
		Short: "Build the guest initramfs (or copy it from the cache) to FILE",
		Long: `build writes the guest initramfs that kata-cr doctor boots: u-root's init,
the kata-cr agent, CRIU with its libraries, the kernel modules CRIU needs for
the chosen kernel, its config, busybox and GNU tar. Images are cached by a
hash of their inputs, so building again with the same inputs is a copy.`,
		Example: `  kata-cr image build -o guest.cpio
  kata-cr image build -o guest-7.3.cpio --kernel-version 7.3 --criu-suite trixie`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if o.Out == "" {
				return usagef("no output file: pass -o FILE")
			}
			if err := o.guest.validate(); err != nil {
				return err
			}
			return runImageBuild(c, deps, o)
		},
	}
	// -o here is the image file; it shadows the global output format,
	// which image build does not use.
	c.Flags().StringVarP(&o.Out, "output", "o", "", "write the image to `FILE`")
	o.guest.addBuildFlags(c.Flags(), true)
	return c
}

func runImageBuild(c *cobra.Command, deps *Deps, o *imageBuildOptions) error {
	ctx, stop := signalContext(c.Context())
	defer stop()
	p := newProgress(deps, o.guest.Verbose)
	// Picking the accelerator is not needed to build: leave it to boots.
	o.guest.Accel = accelTCG
	gst, err := prepareGuest(ctx, &o.guest, p)
	if err != nil {
		return guestRunError(err, 0)
	}
	// Through a temporary file: o.Out is either the old image or the
	// whole new one.
	if err := filecopy.Copy(gst.image, o.Out, filecopy.Options{Atomic: true, Mode: 0o644}); err != nil {
		return fmt.Errorf("write %s: %w", o.Out, err)
	}
	fi, err := os.Stat(o.Out)
	if err != nil {
		return fmt.Errorf("write %s: %w", o.Out, err)
	}
	how := "built"
	if gst.imageCached {
		how = "from the cache"
	}
	fmt.Fprintf(deps.Stdout, "%s: guest image for kernel %s with criu %s, %.1f MB (%s)\n",
		o.Out, gst.kernel.Release, gst.criu.Version, float64(fi.Size())/1e6, how)
	return nil
}
