// tarlist reads a tar stream from stdin with Go's archive/tar, as docker load
// and containerd's importer do, and prints one JSON line per entry as soon as
// its header is read, then {"end": "EOF"} or {"error": "..."}. An entry's
// data is read through, so a truncated member shows as an error after its
// header (which lets a test give Go a header claiming 8 GiB and nothing more).
package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
)

type entry struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Size     int64  `json:"size"`
	Mode     int64  `json:"mode"`
	Linkname string `json:"linkname"`
	Format   string `json:"format"`
}

func main() {
	out := json.NewEncoder(os.Stdout)
	reader := tar.NewReader(os.Stdin)
	for {
		header, err := reader.Next()
		if err == io.EOF {
			out.Encode(map[string]string{"end": "EOF"})
			return
		}
		if err != nil {
			out.Encode(map[string]string{"error": err.Error()})
			return
		}
		out.Encode(entry{header.Name, string([]byte{header.Typeflag}), header.Size, header.Mode,
			header.Linkname, header.Format.String()})
		read, err := io.Copy(io.Discard, reader)
		if err != nil {
			out.Encode(map[string]any{"error": err.Error(), "read": read})
			return
		}
	}
}
