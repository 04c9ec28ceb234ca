package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: not root, with no shell and no password; 65532 is the
// "nonroot" id distroless images use, so volume permissions carry over.
const (
	imageUID = 65532
	// caBundle is where Go's crypto/x509 looks first on Linux.
	caBundle = "/etc/ssl/certs/ca-certificates.crt"
	// imageDataDir is the image's volume for the node's state.
	imageDataDir = "/var/lib/ferry"
)

// hostCABundle is the CA certificates the image carries: the build
// machine's (Debian's ca-certificates package).
var hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// writeImage writes one OCI image per target, under one index, as an OCI
// image layout in a tarball: out/ferry_VERSION_oci.tar. `podman load -i`,
// `skopeo copy oci-archive:...` and `docker load` (containerd image store)
// read it.
func writeImage(out, version string, ts []target, bins map[string]string) (string, error) {
	ca, err := os.ReadFile(hostCABundle)
	if err != nil {
		return "", fmt.Errorf("CA certificates for the image: %w (install ca-certificates)", err)
	}
	dir, err := os.MkdirTemp("", "ferry-oci-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return "", err
	}
	for _, t := range ts {
		img, err := image(bins[t.name], ca, version, t)
		if err != nil {
			return "", err
		}
		platform := v1.Platform{OS: "linux", Architecture: t.goarch, Variant: t.variant}
		if err := p.AppendImage(img, layout.WithPlatform(platform), layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": pkgVersion(version),
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.title":    "ferry",
		})); err != nil {
			return "", err
		}
	}
	path := filepath.Join(out, fmt.Sprintf("ferry_%s_oci.tar", pkgVersion(version)))
	return path, tarDir(dir, path)
}

// image is ferry's image for t: one layer holding the static binary, the CA
// bundle, /etc/passwd and /etc/group naming the ferry user, and its data
// directory; nothing else (no shell, no libc).
func image(bin string, ca []byte, version string, t target) (v1.Image, error) {
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	when := mtime()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, uid int, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: when})
	}
	file := func(name string, mode int64, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(b)), ModTime: when}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nferry:x:%d:%d:ferry:%s:/sbin/nologin\n", imageUID, imageUID, imageDataDir)
	group := fmt.Sprintf("root:x:0:\nferry:x:%d:\n", imageUID)
	for _, step := range []func() error{
		func() error { return dir("etc", 0, 0o755) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ssl", 0, 0o755) },
		func() error { return dir("etc/ssl/certs", 0, 0o755) },
		func() error { return file(caBundle[1:], 0o644, ca) },
		func() error { return dir("tmp", 0, 0o1777) },
		func() error { return dir("usr", 0, 0o755) },
		func() error { return dir("usr/bin", 0, 0o755) },
		func() error { return file(binaryPath[1:], 0o755, binary) },
		func() error { return dir("var", 0, 0o755) },
		func() error { return dir("var/lib", 0, 0o755) },
		func() error { return dir(imageDataDir[1:], imageUID, 0o750) },
		tw.Close,
	} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", t.goarch, t.variant
	cf.Created = v1.Time{Time: when}
	cf.Config.User = fmt.Sprintf("%d:%d", imageUID, imageUID)
	cf.Config.WorkingDir = imageDataDir
	cf.Config.Entrypoint = []string{binaryPath}
	cf.Config.Cmd = []string{"edge", "--data-dir", imageDataDir}
	cf.Config.Env = []string{"SSL_CERT_FILE=" + caBundle}
	cf.Config.ExposedPorts = map[string]struct{}{"1883/tcp": {}, "8883/tcp": {}, "9092/tcp": {}, "8080/tcp": {}}
	cf.Config.Volumes = map[string]struct{}{imageDataDir: {}}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.title": "ferry", "org.opencontainers.image.version": version}
	return mutate.ConfigFile(img, cf)
}

// tarDir writes the files under dir into a tarball at path, names relative
// to dir (an OCI layout's oci-layout, index.json and blobs/ at its root).
func tarDir(dir, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname = filepath.ToSlash(rel), time.Unix(0, 0), 0, 0, "", ""
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil || d.IsDir() {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
