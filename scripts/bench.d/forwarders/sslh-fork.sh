# sslh's fork-per-connection binary (configuration in ../sslh.sh).
sslh_binary=/usr/sbin/sslh
source "$bench_lib/sslh.sh"
