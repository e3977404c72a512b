#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

namespace AzureDicom
{
// A map from Orthanc IDs (44 characters) to positions in a table of fixed capacity, with open
// addressing and linear probing. The table keeps the IDs, so the index keeps only their hashes
// and positions, 8 bytes a slot. It allocates only in its constructor, so that Orthanc's store
// callback can add to it without leaving blocks in the allocator of Orthanc's threads. Not
// thread-safe.
class OrthancIdIndex
{
public:
  static constexpr size_t ID_LENGTH = 44;
  static constexpr uint32_t NOT_FOUND = UINT32_MAX;

  // Returns the ID at a position of the table, which must stay there while the index names it.
  using IdAt = std::function<std::string_view(uint32_t position)>;

  // Takes up to maxEntries IDs. The slots are the next power of two from twice that number, so
  // that a lookup probes few of them.
  OrthancIdIndex(size_t maxEntries, IdAt idAt);

  // Returns whether id has the length of an Orthanc ID. The table must keep IDs of that length,
  // and Find() or Remove() of an ID of another length finds nothing.
  static bool IsOrthancId(std::string_view id)
  {
    return id.size() == ID_LENGTH;
  }

  // Returns the position of id, or NOT_FOUND.
  uint32_t Find(std::string_view id) const;

  // Adds id at position, or moves it there. The caller keeps at most maxEntries IDs.
  void Set(std::string_view id, uint32_t position);

  // Removes id if it is at position (any position for NOT_FOUND). Returns whether it was.
  bool Remove(std::string_view id, uint32_t position = NOT_FOUND);

  size_t GetSize() const
  {
    return size_;
  }

private:
  struct Slot
  {
    uint32_t hash;      // the ID's, so that a probe seldom compares IDs and a move rehashes none
    uint32_t position;  // NOT_FOUND for an empty slot
  };

  static uint32_t Hash(std::string_view id);

  // Returns the slot of id, whose hash is given, or the empty slot where it would go.
  size_t FindSlot(std::string_view id, uint32_t hash) const;

  // Empties a slot, moving back the IDs after it that were placed further from their home slot
  // because of it.
  void EmptySlot(size_t slot);

  IdAt idAt_;
  size_t mask_;  // the number of slots, minus one
  std::unique_ptr<Slot[]> slots_;
  size_t size_ = 0;
};
}  // namespace AzureDicom
