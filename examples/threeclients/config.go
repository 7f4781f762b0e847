package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
)

// defaultPeers are the addresses the course uses: three clients on one
// machine.
var defaultPeers = map[string]string{"1": "127.0.0.1:7001", "2": "127.0.0.1:7002", "3": "127.0.0.1:7003"}

// fileConfig is the JSON file given with -config, e.g.
//
//	{"clients": {"1": "10.0.0.1:7001", "2": "10.0.0.2:7001", "3": "10.0.0.3:7001"},
//	 "balance": 10}
type fileConfig struct {
	Clients map[string]string `json:"clients"`
	Balance int64             `json:"balance,omitempty"`
}

// loadConfigFile reads a -config file.
func loadConfigFile(path string) (fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fileConfig{}, err
	}
	var fc fileConfig
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		return fileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(fc.Clients) == 0 {
		return fileConfig{}, fmt.Errorf("%s: no clients", path)
	}
	return fc, checkPeers(fc.Clients)
}

// parsePeers parses "1=host:port,2=host:port,3=host:port".
func parsePeers(s string) (map[string]string, error) {
	peers := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("-peers: %q is not id=host:port", item)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("-peers: client %s listed twice", id)
		}
		peers[id] = addr
	}
	return peers, checkPeers(peers)
}

func checkPeers(peers map[string]string) error {
	if len(peers) < 2 {
		return errors.New("need at least two clients")
	}
	for id, addr := range peers {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("client %s: address %q: %w", id, addr, err)
		}
	}
	return nil
}

// memberIDs returns the client ids, sorted as numbers where they are.
func memberIDs(peers map[string]string) []string {
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	return ids
}
