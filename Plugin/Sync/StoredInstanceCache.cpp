#include "Sync/StoredInstanceCache.h"

#include "Common/DicomPrefixReader.h"
#include "Common/Exception.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

namespace AzureDicom
{
std::string ComputeOrthancId(const std::string& joinedIdentifiers)
{
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(joinedIdentifiers.data(), joinedIdentifiers.size(), digest, &length, EVP_sha1(),
                 nullptr) != 1 ||
      length != 20)
  {
    throw Exception(ErrorCode::InternalError, "OpenSSL cannot compute a SHA-1 digest");
  }

  static const char* const HEX_DIGITS = "0123456789abcdef";
  std::string id;
  id.reserve(44);
  for (unsigned int i = 0; i < length; i++)
  {
    if (i > 0 && i % 4 == 0)
    {
      id.push_back('-');
    }
    id.push_back(HEX_DIGITS[digest[i] >> 4]);
    id.push_back(HEX_DIGITS[digest[i] & 0x0f]);
  }
  return id;
}


namespace
{
// Finds the Patient ID that Orthanc hashed into orthancId, or returns false. The file's value
// has its trailing padding removed already, and Orthanc may also have removed leading spaces.
bool FindHashedPatientId(std::string& patientId, const DicomIdentifiers& identifiers,
                         const std::string& orthancId)
{
  const std::string uids = "|" + identifiers.studyInstanceUid + "|" +
                           identifiers.seriesInstanceUid + "|" + identifiers.sopInstanceUid;
  if (ComputeOrthancId(identifiers.patientId + uids) == orthancId)
  {
    patientId = identifiers.patientId;
    return true;
  }

  const size_t first = identifiers.patientId.find_first_not_of(' ');
  if (first != 0 && first != std::string::npos &&
      ComputeOrthancId(identifiers.patientId.substr(first) + uids) == orthancId)
  {
    patientId = identifiers.patientId.substr(first);
    return true;
  }
  return false;
}
}  // namespace


namespace
{
// Copies value into a field of capacity bytes, or returns false when it does not fit.
template <size_t capacity>
bool CopyField(char (&field)[capacity], uint8_t& length, const std::string& value)
{
  static_assert(capacity <= UINT8_MAX, "the length must fit in a byte");
  if (value.size() > capacity)
  {
    return false;
  }
  std::memcpy(field, value.data(), value.size());
  length = static_cast<uint8_t>(value.size());
  return true;
}
}  // namespace


StoredInstanceCache::StoredInstanceCache() :
    entries_(new Entry[MAX_ENTRIES]),  // uninitialized: an entry is written before it is read
    index_(new uint32_t[INDEX_SLOTS])
{
  std::fill(index_.get(), index_.get() + INDEX_SLOTS, NO_ENTRY);
}


size_t StoredInstanceCache::FindSlot(const char* orthancId) const
{
  const std::string_view key(orthancId, ORTHANC_ID_LENGTH);
  size_t slot = std::hash<std::string_view>()(key) & (INDEX_SLOTS - 1);
  while (index_[slot] != NO_ENTRY &&
         std::string_view(entries_[index_[slot]].orthancId, ORTHANC_ID_LENGTH) != key)
  {
    slot = (slot + 1) & (INDEX_SLOTS - 1);
  }
  return slot;
}


void StoredInstanceCache::EmptySlot(size_t slot)
{
  size_t hole = slot;
  for (size_t next = (slot + 1) & (INDEX_SLOTS - 1); index_[next] != NO_ENTRY;
       next = (next + 1) & (INDEX_SLOTS - 1))
  {
    const std::string_view key(entries_[index_[next]].orthancId, ORTHANC_ID_LENGTH);
    const size_t home = std::hash<std::string_view>()(key) & (INDEX_SLOTS - 1);
    // The entry may fill the hole if the hole lies between its hash's slot and its own.
    if (((next - home) & (INDEX_SLOTS - 1)) >= ((next - hole) & (INDEX_SLOTS - 1)))
    {
      index_[hole] = index_[next];
      hole = next;
    }
  }
  index_[hole] = NO_ENTRY;
  size_--;
}


bool StoredInstanceCache::Note(const std::string& orthancId, const char* file, size_t size)
{
  DicomIdentifiers identifiers;
  std::string patientId;
  if (file == nullptr || orthancId.size() != ORTHANC_ID_LENGTH ||
      !DicomPrefixReader(file, size).ReadIdentifiers(identifiers) ||
      !FindHashedPatientId(patientId, identifiers, orthancId))
  {
    return false;
  }

  Entry entry;
  std::memcpy(entry.orthancId, orthancId.data(), ORTHANC_ID_LENGTH);
  const std::string studyId = ComputeOrthancId(patientId + "|" + identifiers.studyInstanceUid);
  std::memcpy(entry.orthancStudyId, studyId.data(), ORTHANC_ID_LENGTH);
  entry.size = size;
  if (!CopyField(entry.sopInstanceUid, entry.sopInstanceUidLength, identifiers.sopInstanceUid) ||
      !CopyField(entry.seriesInstanceUid, entry.seriesInstanceUidLength,
                 identifiers.seriesInstanceUid) ||
      !CopyField(entry.studyInstanceUid, entry.studyInstanceUidLength,
                 identifiers.studyInstanceUid))
  {
    return false;
  }

  // The follower takes entries under SCHED_IDLE, and may wait for CPU time with the lock held.
  // Orthanc's store must not wait for that, so the entry is dropped instead.
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock())
  {
    return false;
  }

  // The instance stored again (OverwriteInstances) replaces its entry.
  size_t slot = FindSlot(entry.orthancId);
  if (index_[slot] != NO_ENTRY)
  {
    EmptySlot(slot);
  }

  // The oldest entry, if it is still in the cache, gives its place to the new one.
  const uint32_t position = static_cast<uint32_t>(written_ % MAX_ENTRIES);
  if (written_ >= MAX_ENTRIES)
  {
    const size_t oldest = FindSlot(entries_[position].orthancId);
    if (index_[oldest] == position)
    {
      EmptySlot(oldest);
    }
  }

  entries_[position] = entry;
  written_++;
  index_[FindSlot(entry.orthancId)] = position;
  size_++;
  return true;
}


bool StoredInstanceCache::Take(NewInstance& instance, const std::string& orthancId)
{
  if (orthancId.size() != ORTHANC_ID_LENGTH)
  {
    return false;
  }

  std::lock_guard<std::mutex> lock(mutex_);
  const size_t slot = FindSlot(orthancId.data());
  if (index_[slot] == NO_ENTRY)
  {
    return false;
  }

  const Entry& entry = entries_[index_[slot]];
  instance = NewInstance();
  instance.orthancId = orthancId;
  instance.orthancStudyId.assign(entry.orthancStudyId, ORTHANC_ID_LENGTH);
  instance.sopInstanceUid.assign(entry.sopInstanceUid, entry.sopInstanceUidLength);
  instance.seriesInstanceUid.assign(entry.seriesInstanceUid, entry.seriesInstanceUidLength);
  instance.studyInstanceUid.assign(entry.studyInstanceUid, entry.studyInstanceUidLength);
  instance.size = entry.size;
  EmptySlot(slot);
  return true;
}


void StoredInstanceCache::Forget(const std::string& orthancId)
{
  if (orthancId.size() != ORTHANC_ID_LENGTH)
  {
    return;
  }

  std::lock_guard<std::mutex> lock(mutex_);
  const size_t slot = FindSlot(orthancId.data());
  if (index_[slot] != NO_ENTRY)
  {
    EmptySlot(slot);
  }
}


size_t StoredInstanceCache::GetSize() const
{
  return size_;
}
}  // namespace AzureDicom
