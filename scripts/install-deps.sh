#!/usr/bin/env bash
# install-deps.sh: install what kata-cr, its tests and its guests need, on
# Debian 12 as root, without prompts. Running it again does nothing: packages
# already installed are skipped, and apt-get update runs only when something
# is missing. Services of the packages (nginx, redis) are not started: the
# workloads run inside guests, started by kata-cr.
#
# Go comes from the Go module proxy when it is missing or older than go.mod
# wants (Debian 12's golang is too old): the toolchain is the module
# golang.org/toolchain, the same download `go` itself makes with
# GOTOOLCHAIN=auto. KATA_CR_GOROOT (default /usr/local/go) says where it goes;
# GOPROXY picks the proxy.
set -euo pipefail

prog=install-deps.sh
die() {
	echo "$prog: $*" >&2
	exit 1
}
say() { echo "$prog: $*"; }

[ "$(id -u)" -eq 0 ] || die "run as root: apt-get install needs it (sudo $0)"
command -v apt-get >/dev/null || die "apt-get not found: kata-cr's setup targets Debian 12"

repo=$(cd "$(dirname "$0")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

packages=(
	qemu-system-x86 # qemu-system-x86_64 boots the guests
	criu            # host checks, and the guest's CRIU by default
	busybox-static  # the guest's shell and workloads
	mmdebstrap      # --criu-suite trixie: a Debian rootfs with CRIU 4.1
	cpio            # initramfs archives
	xz-utils        # .ko.xz modules, Debian packages
	bzip2           # kernel image decompression tests
	debian-archive-keyring # mmdebstrap and the private apt lists verify Debian's signatures
	zstd            # .ko.zst modules
	kmod            # modprobe, depmod, modinfo
	iproute2        # ip: loopback checks and fixes
	util-linux      # unshare, setsid, nsenter: real namespaces in tests
	tar             # GNU tar: CRIU saves tmpfs content with it
	ca-certificates # HTTPS to the Debian mirror and the Go module proxy
	file            # identifies kernel images
	procps          # ps, pgrep in tests
	redis-server    # the redis workload
	prometheus      # promtool: the tests check -o prometheus with promtool check metrics
	git             # make build: git describe gives the version
	make
	# kata-cr kernel build (make guest-kernels builds Kata's guest kernel):
	gcc libc6-dev flex bison bc libelf-dev libssl-dev perl
)

installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# nginx-light is enough; any nginx flavour already installed will do.
nginx=nginx-light
for p in nginx-light nginx-core nginx-full nginx-extras nginx; do
	if installed "$p"; then
		nginx=
		break
	fi
done
if [ -n "$nginx" ] && ! apt-cache show nginx-light >/dev/null 2>&1; then
	nginx=nginx
fi

# Go: the version go.mod names, or newer.
want_go=$(awk '$1 == "go" { print $2; exit }' "$repo/go.mod")
[ -n "$want_go" ] || die "no go version in $repo/go.mod"
goroot=${KATA_CR_GOROOT:-/usr/local/go}
gobin=$(PATH="$PATH:$goroot/bin" command -v go || true)
have_go=
if [ -n "$gobin" ]; then
	have_go=$("$gobin" env GOVERSION 2>/dev/null | sed 's/^go//' || true)
fi
need_go=
if [ -z "$have_go" ] || [ "$(printf '%s\n%s\n' "$want_go" "$have_go" | sort -V | head -n1)" != "$want_go" ]; then
	need_go=1
	packages+=(curl unzip)
fi

missing=()
for p in "${packages[@]}" $nginx; do
	installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	# Keep services from starting at install time; restore the system's
	# policy afterwards.
	policy=/usr/sbin/policy-rc.d
	own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
		own_policy=1
	fi
	cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
	trap cleanup EXIT
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
	cleanup
	trap - EXIT
else
	say "all packages already installed"
fi

if [ -n "$need_go" ]; then
	case $(dpkg --print-architecture) in
	amd64) arch=amd64 ;;
	arm64) arch=arm64 ;;
	*) die "no Go toolchain for $(dpkg --print-architecture): install Go $want_go by hand" ;;
	esac
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	[ "$proxy" != direct ] && [ "$proxy" != off ] || proxy=https://proxy.golang.org
	mod="golang.org/toolchain@v0.0.1-go$want_go.linux-$arch"
	say "installing Go $want_go (found: ${have_go:-none}) into $goroot from $proxy"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	curl -fsSL --retry 3 -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$want_go.linux-$arch.zip" ||
		die "download $mod from $proxy failed"
	unzip -q "$tmp/go.zip" -d "$tmp/x"
	# Module zips carry no file modes; go sets them the same way when it
	# unpacks a toolchain.
	chmod -R a+rX "$tmp/x"
	chmod a+x "$tmp/x/$mod"/bin/* "$tmp/x/$mod"/pkg/tool/*/*
	"$tmp/x/$mod/bin/go" version >/dev/null || die "the downloaded Go does not run"
	rm -rf "$goroot"
	mkdir -p "$(dirname "$goroot")"
	mv "$tmp/x/$mod" "$goroot"
	say "$("$goroot/bin/go" version)"
fi

if ! command -v go >/dev/null; then
	say "note: add $goroot/bin to PATH (export PATH=\$PATH:$goroot/bin)"
fi
