#include "limits/admission.h"

namespace splicer::limits {

std::string_view to_string(Refusal refusal) {
    switch (refusal) {
        case Refusal::none: return "none";
        case Refusal::all_full: return "max_connections";
        case Refusal::listener_full: return "max_connections_per_listener";
        case Refusal::client_full: return "max_connections_per_client";
        case Refusal::probing_full: return "max_probing";
    }
    return "?";
}

Admission::Admission(const config::Config& config, std::uint32_t max_connections)
    : probing_listeners_(config.listeners.size()),
      max_connections_(max_connections),
      client_limit_(config.max_connections_per_client),
      probing_limit_(config.max_probing) {
    for (const config::Listener& listener : config.listeners) {
        listener_limits_.push_back(listener.max_connections);
    }
    if (config.http) {
        for (const config::Listener& listener : config.http->listeners) {
            listener_limits_.push_back(listener.max_connections);
        }
    }
    listener_counts_.assign(listener_limits_.size(), 0);
}

Refusal Admission::admit(std::size_t listener, std::string_view client) {
    const std::lock_guard lock(mutex_);
    if (held_ >= max_connections_) {
        return Refusal::all_full;
    }
    if (listener < listener_limits_.size() && listener_limits_[listener] &&
        listener_counts_[listener] >= *listener_limits_[listener]) {
        return Refusal::listener_full;
    }
    if (!client.empty() && from_client_locked(client) >= client_limit_ &&
        under_pressure_locked()) {
        return Refusal::client_full;
    }
    const bool probed = probes(listener);
    if (probed && probing_ >= probing_limit_) {
        return Refusal::probing_full;
    }
    if (listener < listener_counts_.size()) {
        ++listener_counts_[listener];
    }
    if (!client.empty()) {
        ++client_counts_[std::string(client)];
    }
    ++held_;
    if (probed) {
        ++probing_;
    }
    return Refusal::none;
}

Refusal Admission::admit_client(std::string_view client) {
    const std::lock_guard lock(mutex_);
    if (from_client_locked(client) >= client_limit_ && under_pressure_locked()) {
        return Refusal::client_full;
    }
    ++client_counts_[std::string(client)];
    return Refusal::none;
}

bool Admission::under_pressure() const {
    const std::lock_guard lock(mutex_);
    return under_pressure_locked();
}

bool Admission::under_pressure_locked() const {
    // In 64 bits: 2 * 1,000,000 fits 32 too, but the comparison must not depend on it.
    return 2 * std::uint64_t{held_} >= max_connections_ ||
           2 * std::uint64_t{probing_} >= probing_limit_;
}

bool Admission::probes(std::size_t listener) const { return listener < probing_listeners_; }

void Admission::end_probing() {
    const std::lock_guard lock(mutex_);
    if (probing_ > 0) {
        --probing_;
    }
}

void Admission::release(std::size_t listener, std::string_view client) {
    const std::lock_guard lock(mutex_);
    if (listener < listener_counts_.size() && listener_counts_[listener] > 0) {
        --listener_counts_[listener];
    }
    if (held_ > 0) {
        --held_;
    }
    if (client.empty()) {
        return;
    }
    const auto found = client_counts_.find(std::string(client));
    if (found != client_counts_.end() && --found->second == 0) {
        client_counts_.erase(found);  // the map holds only clients with connections
    }
}

std::uint32_t Admission::held() const {
    const std::lock_guard lock(mutex_);
    return held_;
}

std::uint32_t Admission::probing() const {
    const std::lock_guard lock(mutex_);
    return probing_;
}

std::uint32_t Admission::on_listener(std::size_t listener) const {
    const std::lock_guard lock(mutex_);
    return listener < listener_counts_.size() ? listener_counts_[listener] : 0;
}

std::uint32_t Admission::from_client(std::string_view client) const {
    const std::lock_guard lock(mutex_);
    return from_client_locked(client);
}

std::uint32_t Admission::from_client_locked(std::string_view client) const {
    const auto found = client_counts_.find(std::string(client));
    return found == client_counts_.end() ? 0 : found->second;
}

}  // namespace splicer::limits
