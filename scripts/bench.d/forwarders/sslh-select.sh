# sslh's single-process select() binary (Debian 12 ships no sslh-ev; configuration in ../sslh.sh).
sslh_binary=/usr/sbin/sslh-select
source "$bench_lib/sslh.sh"
