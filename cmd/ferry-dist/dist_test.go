package main

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The host's target and a ferry built for it once, shared by the tests
// (building ferry takes a minute on a small machine).
var (
	hostTarget target
	hostBinary string
	buildErr   error
)

const testVersion = "1.2.3-test"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-dist-test-")
	if err != nil {
		panic(err)
	}
	for _, t := range allTargets {
		if t.goarch == runtime.GOARCH {
			hostTarget = t
			break
		}
	}
	if hostTarget.name == "" {
		buildErr = errors.New("no release target for " + runtime.GOARCH)
	} else {
		hostBinary, buildErr = buildBinary(context.Background(), "../..", dir, testVersion, hostTarget)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needBinary(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building ferry: %v", buildErr)
	}
}

// needTool skips without name outside CI; in CI (CI=true) a missing tool
// fails, since `make deps` installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (make deps installs it)", name)
		}
		t.Skipf("%s not installed (make deps installs it)", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPkgVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.4.0":          "1.4.0",
		"1.4.0-3-gabc123": "1.4.0.3.gabc123",
		"5ad37e2":         "0.0.0~git.5ad37e2",
		"5ad37e2-dirty":   "0.0.0~git.5ad37e2.dirty",
		"dev":             "0.0.0~git.dev",
	} {
		if got := pkgVersion(in); got != want {
			t.Errorf("pkgVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestUnitVerifies runs systemd-analyze verify over the packaged unit,
// ExecStart pointed at a real ferry: an unknown or misspelt directive, a
// bad value or a second ExecStart is an error or a warning, both fail.
func TestUnitVerifies(t *testing.T) {
	needBinary(t)
	analyze := needTool(t, "systemd-analyze")
	unit, err := packageFiles.ReadFile("files/ferry.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nUser=ferry\n", "\nStateDirectory=ferry\n", "\nExecReload=/bin/kill -HUP $MAINPID\n", "\nNoNewPrivileges=yes\n", "\nProtectSystem=strict\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", strings.TrimSpace(want))
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), binaryPath, hostBinary)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDebInstalls installs the host's .deb with dpkg -i, as an operator
// would, and checks what it put where: binary, unit, conffile, user, state
// directory, a config the binary accepts. It changes the machine (a
// package, a user), so it runs in CI (as root) or with FERRY_DIST_INSTALL=1.
func TestDebInstalls(t *testing.T) {
	needBinary(t)
	if os.Getenv("CI") != "true" && os.Getenv("FERRY_DIST_INSTALL") != "1" {
		t.Skip("installs a package on this machine: runs with CI=true or FERRY_DIST_INSTALL=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("dpkg -i needs root")
	}
	dpkg := needTool(t, "dpkg")
	if exec.Command("dpkg-query", "-W", "-f=${Status}", "ferry").Run() == nil {
		if st, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "ferry").Output(); strings.Contains(string(st), " installed") {
			t.Fatal("a ferry package is installed already: this test would replace it")
		}
	}
	out := t.TempDir()
	deb, err := writePackage("deb", hostBinary, out, testVersion, hostTarget)
	if err != nil {
		t.Fatal(err)
	}
	run(t, dpkg, "-i", deb)
	t.Cleanup(func() {
		if out, err := exec.Command(dpkg, "--purge", "ferry").CombinedOutput(); err != nil {
			t.Errorf("dpkg --purge ferry: %v\n%s", err, out)
		}
	})

	for path, mode := range map[string]os.FileMode{binaryPath: 0o755, unitPath: 0o644, configPath: 0o644, sysusersPath: 0o644, tmpfilesPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("installed: %v", err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	if got := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "ferry"); !strings.Contains(got, configPath) {
		t.Errorf("conffiles %q do not name %s", got, configPath)
	}
	if got := run(t, "dpkg-query", "-W", "-f=${Version} ${Architecture}", "ferry"); got != "1.2.3.test-1 "+hostTarget.deb {
		t.Errorf("installed version and architecture %q", got)
	}
	if got := run(t, "getent", "passwd", "ferry"); !strings.Contains(got, ":/var/lib/ferry:") {
		t.Errorf("the ferry user: %q", got)
	}
	if got := run(t, "stat", "-c", "%U:%G %a", "/var/lib/ferry"); strings.TrimSpace(got) != "ferry:ferry 750" {
		t.Errorf("/var/lib/ferry: %q, want ferry:ferry 750", got)
	}
	if got := run(t, binaryPath, "--version"); !strings.Contains(got, testVersion) {
		t.Errorf("ferry --version: %q", got)
	}
	run(t, binaryPath, "config", "check", configPath)
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(analyze, "verify", "--man=no", unitPath).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
		}
	}
}

// TestImageRunsItsBinary reads the OCI layout tarball back, as a runtime
// would: the host's platform in the index, a non-root user, CA
// certificates, and a binary that runs.
func TestImageRunsItsBinary(t *testing.T) {
	needBinary(t)
	out := t.TempDir()
	tarPath, err := writeImage(out, testVersion, []target{hostTarget}, map[string]string{hostTarget.name: hostBinary})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	untar(t, tarPath, dir)
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			if img, err = idx.Image(d.Digest); err != nil {
				t.Fatal(err)
			}
		}
	}
	if img == nil {
		t.Fatalf("no linux/%s image in %+v", runtime.GOARCH, im.Manifests)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if u := cf.Config.User; u == "" || u == "0" || strings.HasPrefix(u, "0:") || u == "root" {
		t.Errorf("the image runs as %q, want a non-root user", u)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != binaryPath {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}

	files := map[string][]byte{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	if ca := files[caBundle[1:]]; !strings.Contains(string(ca), "BEGIN CERTIFICATE") {
		t.Errorf("the image's %s holds no certificate (%d bytes)", caBundle, len(ca))
	}
	if !strings.Contains(string(files["etc/passwd"]), "ferry:x:65532:") {
		t.Errorf("/etc/passwd: %q", files["etc/passwd"])
	}
	bin := filepath.Join(t.TempDir(), "ferry")
	if err := os.WriteFile(bin, files[binaryPath[1:]], 0o755); err != nil {
		t.Fatal(err)
	}
	if got := run(t, bin, "--version"); !strings.Contains(got, testVersion) {
		t.Errorf("the image's ferry --version: %q", got)
	}
}

// TestChecksumsVerify writes SHA256SUMS over the binary and an .rpm and
// checks it with sha256sum -c, as a user downloading a release would.
func TestChecksumsVerify(t *testing.T) {
	needBinary(t)
	sha := needTool(t, "sha256sum")
	out := t.TempDir()
	rpm, err := writePackage("rpm", hostBinary, out, testVersion, hostTarget)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(out, filepath.Base(hostBinary))
	b, err := os.ReadFile(hostBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	sums, err := writeChecksums(out, []string{bin, rpm})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sha, "-c", filepath.Base(sums))
	cmd.Dir = out
	got, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(got), ": OK") != 2 {
		t.Fatalf("sha256sum -c: %v\n%s", err, got)
	}
}

func untar(t *testing.T, path, dir string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			t.Fatalf("tar entry %q leaves the directory", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(target, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
