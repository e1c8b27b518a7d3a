// tarlist reads a tar stream from stdin with Go's archive/tar, as docker load
// and containerd's importer do, and prints one JSON line per entry as soon as
// its header is read, then {"end": "EOF"} or {"error": "..."}. An entry's
// data is read through, so a truncated member shows as an error after its
// header (which lets a test give Go a header claiming 8 GiB and nothing more).
//
// With -json, it also keeps the small members an image archive's metadata
// lives in and, after the end, prints one more line: {"json": {member: ...}},
// each member decoded with encoding/json into structs shaped like moby's
// manifest.json items and the OCI index, manifest, config and layout (so keys
// match case-insensitively and the last match wins, as the engines read
// them), the value re-encoded, or the decoding error. With -batch, see main.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path"
	"strings"
)

type entry struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Size     int64  `json:"size"`
	Mode     int64  `json:"mode"`
	Linkname string `json:"linkname"`
	Format   string `json:"format"`
}

// moby image/tarexport manifestItem
type manifestItem struct {
	Config       string
	RepoTags     []string
	Layers       []string
	LayerSources map[string]descriptor `json:",omitempty"`
}

type platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// opencontainers/image-spec v1 Descriptor, Index, Manifest, ImageLayout; the config as moby and containerd read it
type descriptor struct {
	MediaType   string            `json:"mediaType,omitempty"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Manifests     []descriptor `json:"manifests"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType,omitempty"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type rootfs struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type config struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
	RootFS       rootfs `json:"rootfs"`
}

type layout struct {
	Version string `json:"imageLayoutVersion"`
}

const jsonLimit = 4 << 20

func isMetadata(name string) bool {
	return strings.HasPrefix(name, "blobs/") || strings.HasSuffix(name, ".json") || strings.HasSuffix(name, "/json") ||
		name == "repositories" || name == "oci-layout"
}

func decode(raw []byte, value any) map[string]any {
	if err := json.Unmarshal(raw, value); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{"value": value}
}

func decodeAll(name string, raw []byte) map[string]any {
	switch name {
	case "manifest.json":
		return map[string]any{"items": decode(raw, &[]manifestItem{})}
	case "index.json":
		return map[string]any{"index": decode(raw, &index{})}
	case "oci-layout":
		return map[string]any{"layout": decode(raw, &layout{})}
	}
	return map[string]any{"index": decode(raw, &index{}), "manifest": decode(raw, &manifest{}), "config": decode(raw, &config{})}
}

// list reads one archive, handing each line to emit as soon as it is known.
func list(input io.Reader, withJSON bool, emit func(any)) {
	reader := tar.NewReader(input)
	kept := map[string][]byte{}
	for {
		header, err := reader.Next()
		if err == io.EOF {
			emit(map[string]string{"end": "EOF"})
			break
		}
		if err != nil {
			emit(map[string]string{"error": err.Error()})
			return
		}
		emit(entry{header.Name, string([]byte{header.Typeflag}), header.Size, header.Mode,
			header.Linkname, header.Format.String()})
		name := path.Clean(header.Name)
		regular := header.Typeflag == tar.TypeReg || header.Typeflag == tar.TypeRegA
		if withJSON && regular && header.Size <= jsonLimit && isMetadata(name) {
			var buffer bytes.Buffer
			read, err := io.Copy(&buffer, reader)
			if err != nil {
				emit(map[string]any{"error": err.Error(), "read": read})
				return
			}
			kept[name] = buffer.Bytes()
			continue
		}
		read, err := io.Copy(io.Discard, reader)
		if err != nil {
			emit(map[string]any{"error": err.Error(), "read": read})
			return
		}
	}
	if withJSON {
		decoded := map[string]any{}
		for name, raw := range kept {
			decoded[name] = decodeAll(name, raw)
		}
		emit(map[string]any{"json": decoded})
	}
}

// With -batch, stdin holds archives each after its length (8 bytes, big-endian), and each archive's lines come
// out as one JSON list per line: one process for thousands of fuzzed archives.
func main() {
	out := json.NewEncoder(os.Stdout)
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode != "-batch" {
		list(os.Stdin, mode == "-json", func(line any) { out.Encode(line) })
		return
	}
	for {
		var size [8]byte
		if _, err := io.ReadFull(os.Stdin, size[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(size[:]))
		lines := []any{}
		archive := io.LimitReader(os.Stdin, n)
		list(archive, true, func(line any) { lines = append(lines, line) })
		io.Copy(io.Discard, archive)
		out.Encode(lines)
	}
}
