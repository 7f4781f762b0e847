package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lamportledger/lamportledger/lamportmutex"
	"github.com/lamportledger/lamportledger/ledger"
)

// defaultPeers are the addresses the course uses: three clients on one
// machine.
var defaultPeers = map[string]string{"1": "127.0.0.1:7001", "2": "127.0.0.1:7002", "3": "127.0.0.1:7003"}

// fileConfig is the JSON file given with -config, e.g.
//
//	{"clients": {"1": "10.0.0.1:7001", "2": "10.0.0.2:7001", "3": "10.0.0.3:7001"},
//	 "balance": 10}
//
// "clients" is required; "balance" is optional (Balance nil without it).
type fileConfig struct {
	Clients map[string]string
	Balance *int64
}

// Bounds on a -config file, which is input like any other: its size, the
// nesting of its JSON values, and the clients it may list.
const (
	maxConfigBytes = 1 << 20
	maxConfigDepth = 8
	maxClients     = 64
	maxAddrLen     = 300
	maxIDLen       = 63 // as checkCertID allows
)

// loadConfigFile reads and checks a -config file. Every error names the
// file, and the key or client it is about.
func loadConfigFile(path string) (fileConfig, error) {
	// Stat before opening: opening a FIFO would wait for a writer.
	st, err := os.Stat(path)
	if err != nil {
		return fileConfig{}, fmt.Errorf("-config: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fileConfig{}, fmt.Errorf("-config: %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fileConfig{}, fmt.Errorf("-config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return fileConfig{}, fmt.Errorf("-config: %w", err)
	}
	if len(data) > maxConfigBytes {
		return fileConfig{}, fmt.Errorf("%s: larger than %d bytes", path, maxConfigBytes)
	}
	fc, err := parseConfig(data)
	if err != nil {
		return fileConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return fc, nil
}

// parseConfig parses and checks the JSON of a -config file: one object
// with the keys "clients" and "balance" only, each at most once.
func parseConfig(data []byte) (fileConfig, error) {
	if err := checkJSONKeys(data); err != nil {
		return fileConfig{}, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return fileConfig{}, errors.New(`want a JSON object, e.g. {"clients": {"1": "127.0.0.1:7001", "2": "127.0.0.1:7002"}}`)
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		if k != "clients" && k != "balance" {
			return fileConfig{}, fmt.Errorf(`unknown key %.64q (the keys are "clients" and "balance")`, k)
		}
	}
	var fc fileConfig
	raw, ok := top["clients"]
	if !ok {
		return fileConfig{}, errors.New(`no "clients"`)
	}
	if err := json.Unmarshal(raw, &fc.Clients); err != nil || fc.Clients == nil {
		return fileConfig{}, errors.New(`"clients" must be an object of client ids and addresses, e.g. {"1": "127.0.0.1:7001"}`)
	}
	if err := checkPeers(fc.Clients); err != nil {
		return fileConfig{}, fmt.Errorf(`"clients": %w`, err)
	}
	if raw, ok := top["balance"]; ok {
		b, err := parseBalance(raw)
		if err != nil {
			return fileConfig{}, fmt.Errorf(`"balance" %w`, err)
		}
		fc.Balance = &b
	}
	return fc, nil
}

// parseBalance parses a JSON number that must be a positive int64.
func parseBalance(raw json.RawMessage) (int64, error) {
	s := string(raw)
	if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return 0, fmt.Errorf("must be a positive whole number, got %.40s", s)
	}
	b, err := strconv.ParseInt(s, 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("is too large: %.40s", s)
	case err != nil:
		return 0, fmt.Errorf("must be a positive whole number, got %.40s", s)
	case b <= 0:
		return 0, fmt.Errorf("must be positive, got %d", b)
	}
	return b, nil
}

// checkJSONKeys checks that data is one JSON value, nested at most
// maxConfigDepth deep, whose objects have no key twice: encoding/json
// would silently keep the last.
func checkJSONKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walkJSON(dec, data, "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("more after the JSON object, at %s", jsonPos(data, dec.InputOffset()))
	}
	return nil
}

// walkJSON reads one value from dec; in is the key it is the value of.
func walkJSON(dec *json.Decoder, data []byte, in string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(data, dec, err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxConfigDepth {
		return fmt.Errorf("nested deeper than %d, at %s", maxConfigDepth, jsonPos(data, dec.InputOffset()))
	}
	seen := map[string]bool{}
	for dec.More() {
		key := in
		if d == '{' {
			tok, err := dec.Token()
			if err != nil {
				return jsonError(data, dec, err)
			}
			key = tok.(string) // a Decoder's object keys are strings
			if seen[key] {
				where := ""
				if in != "" {
					where = fmt.Sprintf(" in %.64q", in)
				}
				return fmt.Errorf("key %.64q appears twice%s", key, where)
			}
			seen[key] = true
		}
		if err := walkJSON(dec, data, key, depth+1); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return jsonError(data, dec, err)
	}
	return nil
}

func jsonError(data []byte, dec *json.Decoder, err error) error {
	if err == io.EOF {
		return errors.New("not valid JSON: it ends early")
	}
	off := dec.InputOffset()
	if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
		off = se.Offset
	}
	return fmt.Errorf("not valid JSON at %s: %v", jsonPos(data, off), err)
}

// jsonPos names byte offset off of data as "line L, column C".
func jsonPos(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
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
	if err := checkPeers(peers); err != nil {
		return nil, fmt.Errorf("-peers: %w", err)
	}
	return peers, nil
}

// checkPeers checks a ledger's clients: 2 to maxClients of them, ids that
// can name a certificate, and addresses that every client can both listen
// on and dial, no two the same.
func checkPeers(peers map[string]string) error {
	if len(peers) < 2 {
		return errors.New("need at least two clients")
	}
	if len(peers) > maxClients {
		return fmt.Errorf("%d clients, at most %d", len(peers), maxClients)
	}
	owner := map[string]string{} // canonical address -> client
	for _, id := range memberIDs(peers) {
		if len(id) > maxIDLen {
			return fmt.Errorf("client id %.20q... is longer than %d bytes", id, maxIDLen)
		}
		if err := checkCertID(id); err != nil {
			return err
		}
		canon, err := checkAddr(peers[id])
		if err != nil {
			return fmt.Errorf("client %s: %w", quoteID(id), err)
		}
		if other, dup := owner[canon]; dup {
			return fmt.Errorf("clients %s and %s have the same address %s", quoteID(other), quoteID(id), canon)
		}
		owner[canon] = id
	}
	return nil
}

// checkAddr checks a client's address, which the client listens on and the
// others dial: a host (a name or an IP address that is not 0.0.0.0 or ::)
// and a port from 1 to 65535. It returns the address in a canonical form,
// to tell duplicates.
func checkAddr(addr string) (string, error) {
	if len(addr) > maxAddrLen {
		return "", fmt.Errorf("address longer than %d bytes", maxAddrLen)
	}
	q := strconv.Quote(addr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %s is not host:port (%v)", q, err)
	}
	ip := net.ParseIP(host)
	if host == "" || ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("address %s names no host: the other clients dial it, so give the name or IP address they reach this client at, e.g. 127.0.0.1:%s", q, port)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return "", fmt.Errorf("address %s: port %s is not a number from 1 to 65535", q, strconv.Quote(port))
	}
	canon := strings.ToLower(host)
	if ip != nil {
		canon = ip.String()
	}
	return net.JoinHostPort(canon, strconv.Itoa(n)), nil
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

// maxDelay bounds -delay.
const maxDelay = time.Hour

// resolve checks the command line, and the -config file it names, before
// anything starts, and returns the options and the clients to run. Every
// error names the flag, or the file and its key.
func resolve(a cliArgs) (options, []string, error) {
	opts := options{peers: defaultPeers, balance: a.balance, delay: a.delay, trace: a.trace,
		dataDir: a.dataDir, memory: a.memory, insecure: a.insecure, maxBatch: a.batch}
	balanceFrom := "-balance"
	switch {
	case a.peers != "" && a.config != "":
		return options{}, nil, errors.New("give -peers or -config, not both")
	case a.peers != "":
		p, err := parsePeers(a.peers)
		if err != nil {
			return options{}, nil, err
		}
		opts.peers = p
	case a.config != "":
		fc, err := loadConfigFile(a.config)
		if err != nil {
			return options{}, nil, err
		}
		opts.peers = fc.Clients
		if fc.Balance != nil && !a.balanceSet { // the flag wins over the file
			opts.balance, balanceFrom = *fc.Balance, a.config+`: "balance"`
		}
	}
	opts.members = memberIDs(opts.peers)
	if opts.balance <= 0 {
		return options{}, nil, fmt.Errorf("%s must be positive, got %d", balanceFrom, opts.balance)
	}
	if n := int64(len(opts.members)); opts.balance > math.MaxInt64/n {
		return options{}, nil, fmt.Errorf("%s %d is too large: the %d clients' balances must add up to at most %d", balanceFrom, opts.balance, n, int64(math.MaxInt64))
	}
	if a.delay < 0 || a.delay > maxDelay {
		return options{}, nil, fmt.Errorf("-delay must be from 0 to %v, got %v", maxDelay, a.delay)
	}
	if a.batch < 1 || a.batch > ledger.MaxBatch {
		return options{}, nil, fmt.Errorf("-batch must be from 1 to %d, got %d", ledger.MaxBatch, a.batch)
	}
	algo, err := parseAlgorithm(a.algorithm)
	if err != nil {
		return options{}, nil, err
	}
	opts.algorithm = algo
	if a.memory && a.dataSet {
		switch {
		case a.tlsDir != "":
			return options{}, nil, errors.New("-data is not used with -memory and -tls: the ledger stays in memory and the certificates come from -tls; give one of -data and -memory")
		case a.client == "":
			return options{}, nil, errors.New("-data is not used with -memory when every client runs in this process: the ledger and the certificates stay in memory; give one of -data and -memory")
		}
	}
	if err := checkExposure(opts.peers, a.tlsDir != "", a.insecure); err != nil {
		return options{}, nil, err
	}
	if a.http != "" {
		if err := checkHTTPAddr(a.http, a.insecure); err != nil {
			return options{}, nil, err
		}
	}
	if a.client == "" {
		return opts, opts.members, nil
	}
	if _, ok := opts.peers[a.client]; !ok {
		return options{}, nil, fmt.Errorf("unknown client %s (clients: %s)", strconv.Quote(a.client), strings.Join(opts.members, ", "))
	}
	return opts, []string{a.client}, nil
}

// parseAlgorithm parses -algorithm: the name of a lamportmutex.Algorithm.
func parseAlgorithm(s string) (lamportmutex.Algorithm, error) {
	all := []lamportmutex.Algorithm{lamportmutex.Lamport, lamportmutex.RicartAgrawala}
	for _, a := range all {
		if strings.EqualFold(s, a.String()) {
			return a, nil
		}
	}
	return 0, fmt.Errorf("-algorithm %s: want %s or %s", strconv.Quote(s), all[0], all[1])
}

// clusterName is the identity the transport's handshake checks: the
// ledger's genesis hash, and the algorithm unless it is Lamport's, so that
// clients running different algorithms refuse each other instead of
// waiting forever for a RELEASE the other never sends.
func clusterName(genesis ledger.Hash, algo lamportmutex.Algorithm) string {
	if algo == lamportmutex.Lamport {
		return genesis.String()
	}
	return genesis.String() + "+" + algo.String()
}
