// Bits packed LSB-first into bytes: fixed-width codes (the low-bit and
// high-bit codes of the packed format) and unary runs (Golomb-Rice quotients).
// The reader checks every access against the end of its bytes, so a
// truncated or corrupt stream is an error, never a read past the buffer.
#pragma once

#include <stdint.h>

#include <cstring>
#include <string>
#include <vector>

namespace pbllm::pack {

class BitWriter {
 public:
  // The low `bits` (0..57) bits of value.
  void put(uint64_t value, int bits);
  // `count` one bits, then a zero.
  void put_unary(uint64_t count);
  uint64_t bit_count() const { return bits_; }
  // The bytes, the last one padded with zeros.
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
  uint64_t bits_ = 0;
};

class BitReader {
 public:
  // `what` names the stream in errors.
  BitReader(const uint8_t* data, uint64_t size_bytes, uint64_t first_bit, const std::string* what);
  uint64_t get(int bits);  // 0..57 bits
  uint64_t get_unary();    // the count of one bits before the next zero
  uint64_t position() const { return position_; }

 private:
  // 64 bits starting at bit `position_` (past the end: zero-filled, and checked by the callers).
  uint64_t peek() const;
  [[noreturn]] void past_the_end() const;

  const uint8_t* data_;
  uint64_t size_bits_;
  uint64_t position_;
  const std::string* what_;
};

// Reads consecutive codes of `bits` bits from a packed stream whose length
// the caller has checked against the count it will read.
class CodeCursor {
 public:
  CodeCursor(const uint8_t* data, uint64_t size_bytes, uint64_t index, int bits)
      : data_(data), size_bytes_(size_bytes), bit_(index * bits), bits_(bits), mask_((1u << bits) - 1) {}
  uint32_t next() {
    const uint64_t byte = bit_ >> 3;
    uint64_t word = 0;
    if (byte + 8 <= size_bytes_) {
      std::memcpy(&word, data_ + byte, 8);  // the common case: one unaligned load
    } else {
      for (uint64_t i = 0; byte + i < size_bytes_; ++i) word |= static_cast<uint64_t>(data_[byte + i]) << (8 * i);
    }
    const auto code = static_cast<uint32_t>(word >> (bit_ & 7)) & mask_;
    bit_ += bits_;
    return code;
  }

 private:
  const uint8_t* data_;
  uint64_t size_bytes_, bit_;
  int bits_;
  uint32_t mask_;
};

// Codes of `bits` bits each (1..16), packed LSB-first: code i at bit i * bits.
std::vector<uint8_t> pack_codes(const std::vector<uint16_t>& codes, int bits);
// Code `index` of such a stream (the caller has checked its length).
inline uint32_t code_at(const uint8_t* data, uint64_t index, int bits) {
  const uint64_t bit = index * static_cast<uint64_t>(bits);
  uint32_t word = 0;
  const uint64_t byte = bit >> 3;
  for (int i = 0, needed = ((bit & 7) + bits + 7) >> 3; i < needed; ++i) word |= static_cast<uint32_t>(data[byte + i]) << (8 * i);
  return (word >> (bit & 7)) & ((1u << bits) - 1);
}
// Bytes a stream of `count` codes of `bits` bits takes.
inline uint64_t packed_code_bytes(uint64_t count, int bits) { return (count * static_cast<uint64_t>(bits) + 7) / 8; }

}  // namespace pbllm::pack
