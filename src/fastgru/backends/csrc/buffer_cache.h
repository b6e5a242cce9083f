// The cache of mmap'ed blocks behind the kernel's large buffers (empty_cached); the comment on BufferCache
// says why it exists and how it is bounded. Not in the anonymous namespace: every source must use the
// one cache of the process (one instance() of an inline function).
#pragma once

#include <ATen/ATen.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

// Large buffers (projections, states, saved gates, gate gradients) come from a cache of mappings. Why:
// these tens of MB are allocated and freed every training step, and memory that malloc hands back to the
// system costs a zeroed page fault per page when touched again (measured: most of the variance of a
// training step, and 15-25% of its median). Blocks are mmap'ed in 64 KiB multiples, returned to the cache
// when their tensor dies and reused best-fit (a block at most 2x the request); the cache keeps at most
// kMaxCachedBytes, unmapping the oldest blocks beyond it. FASTGRU_BUFFER_CACHE=0 turns it off (plain
// at::empty), release_buffers() empties it; FASTGRU_HUGE_PAGES=1 asks for transparent huge pages on the
// blocks (same speed here once blocks are reused, and a few MB more resident memory per step).
class BufferCache {
 public:
  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: tensors may outlive static teardown
    return *cache;
  }
  static bool enabled() {
    static const bool on = [] {
      const char* env = std::getenv("FASTGRU_BUFFER_CACHE");
      return env == nullptr || std::string(env) != "0";
    }();
    return on;
  }
  // A block of at least `bytes`; its real size goes to *size.
  void* get(size_t bytes, size_t* size) {
    const size_t want = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(want);
      if (it != free_.end() && it->first <= 2 * want) {
        void* p = it->second.first;
        *size = it->first;
        cached_ -= it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(p != MAP_FAILED, "fastgru: could not map ", want, " bytes");
    if (huge_pages()) madvise(p, want, MADV_HUGEPAGE);
    *size = want;
    return p;
  }
  void put(void* p, size_t size) {
    std::vector<std::pair<void*, size_t>> unmap;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.emplace(size, std::make_pair(p, ++clock_));
      cached_ += size;
      while (cached_ > kMaxCachedBytes) {  // drop the oldest blocks
        auto oldest = free_.begin();
        for (auto it = free_.begin(); it != free_.end(); ++it)
          if (it->second.second < oldest->second.second) oldest = it;
        unmap.emplace_back(oldest->second.first, oldest->first);
        cached_ -= oldest->first;
        free_.erase(oldest);
      }
    }
    for (auto& [q, n] : unmap) munmap(q, n);
  }
  void release() {
    std::multimap<size_t, std::pair<void*, uint64_t>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [n, block] : blocks) munmap(block.first, n);
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  static constexpr size_t kGranule = size_t(64) << 10;
  static constexpr size_t kMaxCachedBytes = size_t(512) << 20;
  static size_t round_up(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }
  static bool huge_pages() {
    static const bool on = [] { const char* e = std::getenv("FASTGRU_HUGE_PAGES"); return e && std::string(e) == "1"; }();
    return on;
  }
  std::mutex mutex_;
  std::multimap<size_t, std::pair<void*, uint64_t>> free_;  // size -> (block, when it was freed)
  size_t cached_ = 0;
  uint64_t clock_ = 0;
};

inline at::Tensor empty_cached(at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr size_t kMinBytes = size_t(1) << 20;  // smaller buffers: malloc serves them well
  const size_t bytes = c10::multiply_integers(sizes) * c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  if (!BufferCache::enabled() || bytes < kMinBytes) return at::empty(sizes, options);
  size_t size = 0;
  void* p = BufferCache::instance().get(bytes, &size);
  return at::from_blob(p, sizes, [size](void* q) { BufferCache::instance().put(q, size); },
                       options.device(at::kCPU));
}
