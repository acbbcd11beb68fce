#include "pbllm/pack/bit_stream.h"

#include <cstring>

#include "pbllm/core/check.h"

namespace pbllm::pack {

void BitWriter::put(uint64_t value, int bits) {
  for (int done = 0; done < bits;) {
    if ((bits_ & 7) == 0) bytes_.push_back(0);
    const int offset = static_cast<int>(bits_ & 7);
    const int take = std::min(8 - offset, bits - done);
    bytes_.back() |= static_cast<uint8_t>(((value >> done) & ((1u << take) - 1)) << offset);
    done += take;
    bits_ += take;
  }
}

void BitWriter::put_unary(uint64_t count) {
  for (; count >= 32; count -= 32) put(0xffffffffu, 32);
  put((uint64_t{1} << count) - 1, static_cast<int>(count) + 1);  // count ones, then the zero
}

BitReader::BitReader(const uint8_t* data, uint64_t size_bytes, uint64_t first_bit, const std::string* what)
    : data_(data), size_bits_(size_bytes * 8), position_(first_bit), what_(what) {
  if (first_bit > size_bits_) past_the_end();
}

void BitReader::past_the_end() const {
  throw Error(str_cat(what_ ? *what_ : std::string("bit stream"), ": truncated or corrupt (a read at bit ", position_,
                      " of ", size_bits_, ")"));
}

uint64_t BitReader::peek() const {
  const uint64_t byte = position_ >> 3, size_bytes = size_bits_ >> 3;
  uint64_t word = 0;
  if (byte + 8 <= size_bytes) {
    std::memcpy(&word, data_ + byte, 8);
  } else {
    for (uint64_t i = 0; byte + i < size_bytes; ++i) word |= static_cast<uint64_t>(data_[byte + i]) << (8 * i);
  }
  return word >> (position_ & 7);
}

uint64_t BitReader::get(int bits) {
  if (bits == 0) return 0;
  if (position_ + bits > size_bits_) past_the_end();
  const uint64_t value = peek() & ((uint64_t{1} << bits) - 1);
  position_ += bits;
  return value;
}

uint64_t BitReader::get_unary() {
  uint64_t count = 0;
  for (;;) {
    // 57 valid bits per peek: ones counted up to the first zero.
    const uint64_t word = ~peek() | (uint64_t{1} << 56);
    const int ones = __builtin_ctzll(word);
    if (position_ + ones >= size_bits_) past_the_end();
    count += ones;
    position_ += ones;
    if (ones < 56) {
      ++position_;  // the terminating zero
      return count;
    }
  }
}

std::vector<uint8_t> pack_codes(const std::vector<uint16_t>& codes, int bits) {
  PBLLM_CHECK(bits >= 1 && bits <= 16, "pack_codes: ", bits, " bits per code");
  BitWriter writer;
  for (const uint16_t code : codes) writer.put(code, bits);
  return writer.bytes();
}

}  // namespace pbllm::pack
