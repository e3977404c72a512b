#include "Sync/OrthancIdIndex.h"

#include <cstring>
#include <functional>

namespace AzureDicom
{
OrthancIdIndex::OrthancIdIndex(size_t maxEntries)
{
  size_t slots = 1;
  while (slots < 2 * maxEntries)
  {
    slots *= 2;
  }
  mask_ = slots - 1;
  slots_.reset(new Slot[slots]);
  for (size_t i = 0; i < slots; i++)
  {
    slots_[i].position = NOT_FOUND;
  }
}


size_t OrthancIdIndex::GetHomeSlot(std::string_view id) const
{
  return std::hash<std::string_view>()(id) & mask_;
}


size_t OrthancIdIndex::FindSlot(std::string_view id) const
{
  size_t slot = GetHomeSlot(id);
  while (slots_[slot].position != NOT_FOUND &&
         std::string_view(slots_[slot].id, ID_LENGTH) != id)
  {
    slot = (slot + 1) & mask_;
  }
  return slot;
}


void OrthancIdIndex::EmptySlot(size_t slot)
{
  size_t hole = slot;
  for (size_t next = (slot + 1) & mask_; slots_[next].position != NOT_FOUND;
       next = (next + 1) & mask_)
  {
    const size_t home = GetHomeSlot(std::string_view(slots_[next].id, ID_LENGTH));
    // The ID may fill the hole if the hole lies between its home slot and its own slot.
    if (((next - home) & mask_) >= ((next - hole) & mask_))
    {
      slots_[hole] = slots_[next];
      hole = next;
    }
  }
  slots_[hole].position = NOT_FOUND;
  size_--;
}


uint32_t OrthancIdIndex::Find(std::string_view id) const
{
  return slots_[FindSlot(id)].position;
}


void OrthancIdIndex::Set(std::string_view id, uint32_t position)
{
  Slot& slot = slots_[FindSlot(id)];
  if (slot.position == NOT_FOUND)
  {
    std::memcpy(slot.id, id.data(), ID_LENGTH);
    size_++;
  }
  slot.position = position;
}


bool OrthancIdIndex::Remove(std::string_view id, uint32_t position)
{
  const size_t slot = FindSlot(id);
  if (slots_[slot].position == NOT_FOUND ||
      (position != NOT_FOUND && slots_[slot].position != position))
  {
    return false;
  }
  EmptySlot(slot);
  return true;
}
}  // namespace AzureDicom
