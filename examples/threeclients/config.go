package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
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
			return nil, fmt.Errorf("-peers: client %s listed twice", quoteID(id))
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
			return fmt.Errorf("client %s: address %q: %w", quoteID(id), addr, err)
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

// checkExposure refuses, without TLS certificates given with -tls, peer
// addresses that are not on loopback, unless insecure: the certificates
// made on first start exist only on this machine.
func checkExposure(peers map[string]string, withTLS, insecure bool) error {
	if withTLS || insecure {
		return nil
	}
	for _, id := range memberIDs(peers) {
		host, _, err := net.SplitHostPort(peers[id])
		if err != nil {
			return fmt.Errorf("client %s: address %q: %w", quoteID(id), peers[id], err)
		}
		if !isLoopback(host) {
			return fmt.Errorf("client %s has address %s, which is not on this machine's loopback: "+
				"without -tls, clients use certificates made on first start, which exist only on this machine. "+
				"Run \"threeclients certs -dir DIR\" with the same -peers or -config, copy DIR to every machine, "+
				"and start every client with -tls DIR (or give -insecure to talk in plaintext, unauthenticated)",
				quoteID(id), strconv.Quote(peers[id]))
		}
	}
	return nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
// Other names are not resolved: what they resolve to can change.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
