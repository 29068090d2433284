# The backends, in the backend namespace: one nginx for the whole run (HTTPS on
# $tls_port with a self-signed certificate made now, plain HTTP on $http_port, both answering
# a small 200), and on $plain_port whichever plain server the current workload needs
# (iperf3 for bulk, the echo server for ping-pong and idle connections).

readonly sni_name=bench.example tls_port=8443 plain_port=9000 http_port=8080
# The name the terminating forwarders answer for (workloads tls_term_*), with one certificate
# for all of them: $term_dir/cert.pem, key.pem, and both in one file (HAProxy's crt).
readonly term_name=term.example term_port=4443

make_term_certificate() {
  term_dir=$1/term-certificate
  mkdir -p "$term_dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$term_name" -addext "subjectAltName=DNS:$term_name" \
    -keyout "$term_dir/key.pem" -out "$term_dir/cert.pem" 2>/dev/null
  cat "$term_dir/cert.pem" "$term_dir/key.pem" >"$term_dir/both.pem"
}

start_nginx_backend() {
  local dir=$1/nginx-backend
  mkdir -p "$dir/logs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$sni_name" -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
  cat >"$dir/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    server {
        listen $backend_ip:$tls_port ssl backlog=4096;
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        location / { return 200 "ok\n"; }
    }
    server {
        listen $backend_ip:$http_port backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
CONF
  start_in "$ns_backend" "$dir/logs/stderr.log" nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;'
  wait_listening "$ns_backend" "$backend_ip:$tls_port" && wait_listening "$ns_backend" "$backend_ip:$http_port"
}

# start_plain_backend LOG COMMAND...: the plain server for one workload; sets plain_pid.
start_plain_backend() {
  local log=$1
  shift
  start_in "$ns_backend" "$log" "$@"
  plain_pid=$last_pid
  wait_listening "$ns_backend" "$backend_ip:$plain_port"
}
