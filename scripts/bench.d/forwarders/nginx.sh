# nginx 1.22: the stream module with ssl_preread routes SNI $sni_name to the TLS backend and
# everything else (no ClientHello) to the plain backend; port 80 is an http reverse proxy
# with upstream keep-alive. On $term_port it terminates TLS for $term_name and proxies to the
# HTTP backend as its port 80 does, offering TLS 1.2 and 1.3 as splicer and HAProxy 2.6 do:
# nginx before 1.23.4 leaves TLS 1.3 off unless ssl_protocols names it, and wrk then
# resumed TLS 1.2 sessions (no key exchange at all) against the others' TLS 1.3 PSK-DHE
# handshakes (an X25519 key pair and shared secret per connection).
fwd_tls=$forwarder_ip:443
fwd_plain=$forwarder_ip:443
fwd_http=$forwarder_ip:80
fwd_term=$forwarder_ip:$term_port
fwd_configure() {
  local dir=$1
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes auto;
user root;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16384; }
stream {
    map \$ssl_preread_server_name \$upstream {
        $sni_name $backend_ip:$tls_port;
        default $backend_ip:$plain_port;
    }
    server {
        listen $forwarder_ip:443 backlog=4096;
        ssl_preread on;
        proxy_pass \$upstream;
    }
}
http {
    # Port 80 as the Snikket page configures it (issue 4's nginx block), with the backend
    # connection pool a careful nginx user adds (upstream keepalive + HTTP/1.1 upstream,
    # Connection cleared), as splicer and HAProxy reuse theirs; the access log on, as
    # splicer writes its access line too.
    access_log $dir/access.log;
    upstream web {
        server $backend_ip:$http_port;
        keepalive 32;
    }
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen $forwarder_ip:80 backlog=4096;
        location / {
            proxy_pass http://web/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            client_max_body_size 20m;
        }
    }
    server {
        listen $forwarder_ip:$term_port ssl backlog=4096;
        ssl_certificate $term_dir/cert.pem;
        ssl_certificate_key $term_dir/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://web/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            client_max_body_size 20m;
        }
    }
}
CONF
  fwd_command=(nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;')
}
