#include "Sync/OrthancIdIndex.h"

namespace AzureDicom
{
OrthancIdIndex::OrthancIdIndex(size_t maxEntries, IdAt idAt) : idAt_(std::move(idAt))
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


uint32_t OrthancIdIndex::Hash(std::string_view id)
{
  const size_t hash = std::hash<std::string_view>()(id);
  return static_cast<uint32_t>(hash ^ (hash >> 32));
}


size_t OrthancIdIndex::FindSlot(std::string_view id, uint32_t hash) const
{
  size_t slot = hash & mask_;
  while (slots_[slot].position != NOT_FOUND &&
         (slots_[slot].hash != hash || idAt_(slots_[slot].position) != id))
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
    const size_t home = slots_[next].hash & mask_;
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
  return slots_[FindSlot(id, Hash(id))].position;
}


void OrthancIdIndex::Set(std::string_view id, uint32_t position)
{
  const uint32_t hash = Hash(id);
  Slot& slot = slots_[FindSlot(id, hash)];
  if (slot.position == NOT_FOUND)
  {
    slot.hash = hash;
    size_++;
  }
  slot.position = position;
}


bool OrthancIdIndex::Remove(std::string_view id, uint32_t position)
{
  const size_t slot = FindSlot(id, Hash(id));
  if (slots_[slot].position == NOT_FOUND ||
      (position != NOT_FOUND && slots_[slot].position != position))
  {
    return false;
  }
  EmptySlot(slot);
  return true;
}
}  // namespace AzureDicom
